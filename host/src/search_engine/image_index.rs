//! Visual similarity that survives resizing, re-encoding, small shifts and
//! brightness changes, as a Lens stand-in needs.
//!
//! A fingerprint is the picture shrunk to a 24×24 grid of CIELAB colours
//! (shrinking removes size and JPEG detail; Lab makes distances read as
//! perceived colour differences). Two fingerprints are compared with a
//! displacement-tolerant distance: every cell is matched to the closest
//! colour among the other grid's cell and its 8 neighbours, both ways, after
//! removing the difference in mean lightness. That absorbs a part of the
//! picture moving or growing by a few per cent (one cell is about 4 %) while
//! keeping where the colours are and what shape they draw. A search first
//! ranks every image by an 8×8 block average of the grid (cheap) and then
//! compares only the closest few with the tolerant distance.

use anyhow::Context;
use image::DynamicImage;
use image::imageops::FilterType;

/// Side of the fingerprint grid, in cells.
const SIDE: usize = 24;
/// Cells of the fine grid averaged into one coarse cell (per side).
const BLOCK: usize = 3;
const COARSE: usize = SIDE / BLOCK;
/// How far (in cells) a cell may be matched away from its own position.
const REACH: usize = 1;
/// A mean-lightness difference up to this (Lab L units) counts as exposure.
const MAX_LIGHTNESS_SHIFT: f32 = 8.0;
/// Images compared with the tolerant distance per query (at least).
const SHORTLIST: usize = 32;
/// Distances are RMS Lab differences over this: 1.0 is black against white.
const LAB_SCALE: f32 = 100.0;
/// Distances above this are not a visual match (a Lab difference of 15 per
/// cell on average: re-encoded, jittered copies stay well under 10).
pub const MATCH_THRESHOLD: f32 = 0.15;

type Lab = [f32; 3];

#[derive(Clone, Debug, PartialEq)]
pub struct Fingerprint {
    /// `SIDE`×`SIDE` Lab cells, row by row.
    fine: Vec<Lab>,
    /// `COARSE`×`COARSE` block means of `fine`.
    coarse: Vec<Lab>,
    mean_lightness: f32,
}

impl Fingerprint {
    pub fn of_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let img = image::load_from_memory(bytes).context("decoding image")?;
        Ok(Self::of_image(&img))
    }

    pub fn of_image(img: &DynamicImage) -> Self {
        // Triangle filtering widens with the shrink factor, so every cell is
        // a smooth average of its area whatever the source size.
        let small = img
            .resize_exact(SIDE as u32, SIDE as u32, FilterType::Triangle)
            .to_rgb8();
        let fine: Vec<Lab> = small.pixels().map(|p| srgb_to_lab(p.0)).collect();
        let mut coarse = vec![[0.0f32; 3]; COARSE * COARSE];
        for (i, cell) in fine.iter().enumerate() {
            let (y, x) = (i / SIDE / BLOCK, i % SIDE / BLOCK);
            for (acc, v) in coarse[y * COARSE + x].iter_mut().zip(cell) {
                *acc += v / (BLOCK * BLOCK) as f32;
            }
        }
        let mean_lightness = fine.iter().map(|c| c[0]).sum::<f32>() / fine.len() as f32;
        Self {
            fine,
            coarse,
            mean_lightness,
        }
    }

    /// The lightness shift from `other` to `self` that is put down to exposure.
    fn lightness_shift(&self, other: &Self) -> f32 {
        (self.mean_lightness - other.mean_lightness)
            .clamp(-MAX_LIGHTNESS_SHIFT, MAX_LIGHTNESS_SHIFT)
    }

    /// The displacement-tolerant distance: 0 for the same picture, small for
    /// a shifted, rescaled, brightened or re-encoded copy, 0.3 and more for
    /// different pictures. Symmetric.
    pub fn distance(&self, other: &Self) -> f32 {
        let shift = self.lightness_shift(other);
        let both = tolerant_one_way(&self.fine, &other.fine, shift)
            + tolerant_one_way(&other.fine, &self.fine, -shift);
        (both / 2.0).sqrt() / LAB_SCALE
    }

    /// RMS distance of the coarse grids: a cheap first ranking.
    fn coarse_distance(&self, other: &Self) -> f32 {
        let shift = self.lightness_shift(other);
        let sum: f32 = self
            .coarse
            .iter()
            .zip(&other.coarse)
            .map(|(a, b)| squared([a[0] - shift, a[1], a[2]], b))
            .sum();
        (sum / self.coarse.len() as f32).sqrt() / LAB_SCALE
    }
}

fn squared(a: Lab, b: &Lab) -> f32 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)
}

/// Mean over `a`'s cells (lightness lowered by `shift`) of the squared Lab
/// difference to the closest of `b`'s cells within [`REACH`].
fn tolerant_one_way(a: &[Lab], b: &[Lab], shift: f32) -> f32 {
    let mut total = 0.0f32;
    for y in 0..SIDE {
        let rows = y.saturating_sub(REACH)..=(y + REACH).min(SIDE - 1);
        for x in 0..SIDE {
            let cols = x.saturating_sub(REACH)..=(x + REACH).min(SIDE - 1);
            let [l, ca, cb] = a[y * SIDE + x];
            let cell = [l - shift, ca, cb];
            let mut best = f32::INFINITY;
            for yy in rows.clone() {
                for other in &b[yy * SIDE + cols.start()..=yy * SIDE + cols.end()] {
                    best = best.min(squared(cell, other));
                }
            }
            total += best;
        }
    }
    total / (SIDE * SIDE) as f32
}

/// sRGB (D65) to CIELAB.
fn srgb_to_lab(rgb: [u8; 3]) -> Lab {
    let [r, g, b] = rgb.map(|c| {
        let c = c as f32 / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    });
    // XYZ relative to the D65 white point.
    let x = (0.412_456 * r + 0.357_576 * g + 0.180_438 * b) / 0.950_47;
    let y = 0.212_673 * r + 0.715_152 * g + 0.072_175 * b;
    let z = (0.019_334 * r + 0.119_192 * g + 0.950_304 * b) / 1.088_83;
    let f = |t: f32| {
        if t > 216.0 / 24_389.0 {
            t.cbrt()
        } else {
            (24_389.0 / 27.0 * t + 16.0) / 116.0
        }
    };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// Fingerprints of every corpus image.
pub struct ImageIndex {
    entries: Vec<Fingerprint>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ImageHit {
    /// Index into the corpus images.
    pub image: usize,
    pub distance: f32,
}

impl ImageIndex {
    pub fn new(entries: Vec<Fingerprint>) -> Self {
        Self { entries }
    }

    /// Images within [`MATCH_THRESHOLD`] of `query`, nearest first: the
    /// `max(want, SHORTLIST)` nearest by coarse grid, re-ranked by
    /// [`Fingerprint::distance`]. Ask for more than you keep when several
    /// images may collapse into one result.
    pub fn search(&self, query: &Fingerprint, want: usize) -> Vec<ImageHit> {
        let mut coarse: Vec<(f32, usize)> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, fp)| (fp.coarse_distance(query), i))
            .collect();
        let shortlist = want.max(SHORTLIST).min(coarse.len());
        if shortlist < coarse.len() {
            coarse.select_nth_unstable_by(shortlist, |a, b| a.0.total_cmp(&b.0));
            coarse.truncate(shortlist);
        }
        let mut hits: Vec<ImageHit> = coarse
            .into_iter()
            .map(|(_, image)| ImageHit {
                image,
                distance: self.entries[image].distance(query),
            })
            .filter(|h| h.distance <= MATCH_THRESHOLD)
            .collect();
        hits.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then(a.image.cmp(&b.image))
        });
        hits
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{ImageFormat, Rgb, RgbImage};
    use mmsr_trainer::demo::emblem::{EmblemSpec, Jitter, Layout, Shape, jpeg};
    use rand::{Rng, SeedableRng};
    use std::io::Cursor;

    /// A smooth random picture: a few coloured blobs on a gradient.
    pub(crate) fn picture(seed: u64, w: u32, h: u32) -> RgbImage {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let blobs: Vec<(f32, f32, f32, [f32; 3])> = (0..5)
            .map(|_| {
                let c = [
                    rng.random::<f32>() * 255.0,
                    rng.random::<f32>() * 255.0,
                    rng.random::<f32>() * 255.0,
                ];
                (
                    rng.random::<f32>(),
                    rng.random::<f32>(),
                    0.05 + rng.random::<f32>() * 0.2,
                    c,
                )
            })
            .collect();
        let base = [
            rng.random::<f32>() * 255.0,
            rng.random::<f32>() * 255.0,
            rng.random::<f32>() * 255.0,
        ];
        RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let mut px = base.map(|b| b * (0.5 + 0.5 * fx));
            for (bx, by, r, c) in &blobs {
                if (fx - bx).powi(2) + (fy - by).powi(2) < r * r {
                    px = *c;
                }
            }
            Rgb(px.map(|v| v.clamp(0.0, 255.0) as u8))
        })
    }

    pub(crate) fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn fp(img: &RgbImage) -> Fingerprint {
        Fingerprint::of_image(&img.clone().into())
    }

    fn jpeg_fp(img: &RgbImage, quality: u8) -> Fingerprint {
        Fingerprint::of_bytes(&jpeg(img, quality).unwrap()).unwrap()
    }

    #[test]
    fn survives_resizing_and_reencoding() {
        let originals: Vec<RgbImage> = (0..20).map(|s| picture(s, 320, 240)).collect();
        let index = ImageIndex::new(
            originals
                .iter()
                .map(|i| Fingerprint::of_bytes(&encode(i, ImageFormat::Png)).unwrap())
                .collect(),
        );
        for (i, img) in originals.iter().enumerate() {
            let small = image::imageops::resize(img, 150, 113, FilterType::CatmullRom);
            let hits = index.search(&jpeg_fp(&small, 40), 5);
            assert_eq!(
                hits.first().map(|h| h.image),
                Some(i),
                "image {i}: {hits:?}"
            );
            assert!(
                hits[0].distance < MATCH_THRESHOLD / 2.0,
                "image {i}: {hits:?}"
            );
        }
    }

    /// A crop that moves the picture by `dx`, `dy` (fractions of its size),
    /// resized back and made `gain` times brighter.
    fn moved(img: &RgbImage, dx: f32, dy: f32, gain: f32) -> RgbImage {
        let (w, h) = img.dimensions();
        let (ox, oy) = ((dx * w as f32) as u32, (dy * h as f32) as u32);
        let crop = image::imageops::crop_imm(img, ox, oy, w - ox, h - oy).to_image();
        let mut out = image::imageops::resize(&crop, w, h, FilterType::Triangle);
        for p in out.pixels_mut() {
            p.0 =
                p.0.map(|c| (c as f32 * gain).round().clamp(0.0, 255.0) as u8);
        }
        out
    }

    #[test]
    fn survives_small_shifts_and_brightness_changes() {
        let originals: Vec<RgbImage> = (0..20).map(|s| picture(s, 200, 200)).collect();
        let index = ImageIndex::new(originals.iter().map(fp).collect());
        for (i, img) in originals.iter().enumerate() {
            let gain = if i % 2 == 0 { 1.07 } else { 0.93 };
            let query = moved(img, 0.04, 0.03, gain);
            let hits = index.search(&jpeg_fp(&query, 75), 5);
            assert_eq!(
                hits.first().map(|h| h.image),
                Some(i),
                "image {i}: {hits:?}"
            );
        }
    }

    #[test]
    fn distance_is_zero_to_itself_and_symmetric() {
        let (a, b) = (fp(&picture(1, 64, 48)), fp(&picture(2, 64, 48)));
        assert_eq!(a.distance(&a), 0.0);
        assert_eq!(a.distance(&b), b.distance(&a));
        assert!(a.distance(&b) > MATCH_THRESHOLD, "{}", a.distance(&b));
    }

    #[test]
    fn ranks_by_how_much_of_the_picture_changed() {
        // A picture blended ever more towards another: the index must rank
        // the blends in order of how little of the original they kept.
        let (a, b) = (picture(3, 96, 96), picture(4, 96, 96));
        let blend = |t: f32| {
            RgbImage::from_fn(96, 96, |x, y| {
                let (p, q) = (a.get_pixel(x, y).0, b.get_pixel(x, y).0);
                Rgb(std::array::from_fn(|c| {
                    (p[c] as f32 * (1.0 - t) + q[c] as f32 * t).round() as u8
                }))
            })
        };
        let steps = [0.2, 0.05, 0.15, 0.0, 0.1];
        let index = ImageIndex::new(steps.iter().map(|&t| fp(&blend(t))).collect());
        let order: Vec<usize> = index.search(&fp(&a), 5).iter().map(|h| h.image).collect();
        assert_eq!(order, [3, 1, 4, 2, 0]);
    }

    #[test]
    fn the_same_colours_in_another_shape_do_not_match() {
        // The hardest emblems to tell apart: one field, one charge colour,
        // only the shape differs. Photos are jittered to the demo's limits.
        let spec = |shape| EmblemSpec {
            layout: Layout::HorizontalBands,
            field: vec![1, 4],
            shape,
            charge: 0,
        };
        let index = ImageIndex::new(
            Shape::ALL
                .iter()
                .map(|&s| jpeg_fp(&spec(s).render(192, Jitter::NONE), 92))
                .collect(),
        );
        let jitters = [(0.04, -0.04, 1.08, 1.07), (-0.04, 0.04, 0.92, 0.93)];
        for (i, &shape) in Shape::ALL.iter().enumerate() {
            for (dx, dy, scale, brightness) in jitters {
                let jitter = Jitter {
                    dx,
                    dy,
                    scale,
                    brightness,
                };
                let hits = index.search(&jpeg_fp(&spec(shape).render(96, jitter), 70), 8);
                assert_eq!(
                    hits.first().map(|h| h.image),
                    Some(i),
                    "{shape:?} {jitter:?}: {hits:?}"
                );
            }
        }
    }

    #[test]
    fn unrelated_pictures_do_not_match() {
        let index = ImageIndex::new((0..20).map(|s| fp(&picture(s, 64, 64))).collect());
        let false_matches: usize = (100..140)
            .map(|s| index.search(&fp(&picture(s, 64, 64)), 5).len())
            .sum();
        assert_eq!(false_matches, 0, "unrelated pictures matched");
    }

    #[test]
    fn colour_separates_flat_images() {
        let red = fp(&RgbImage::from_pixel(32, 32, Rgb([220, 20, 20])));
        let blue = fp(&RgbImage::from_pixel(32, 32, Rgb([20, 20, 220])));
        assert!(
            red.distance(&blue) > MATCH_THRESHOLD,
            "{}",
            red.distance(&blue)
        );
    }

    #[test]
    fn lab_of_known_colours() {
        let close = |a: Lab, b: Lab| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 0.5);
        assert!(close(srgb_to_lab([255, 255, 255]), [100.0, 0.0, 0.0]));
        assert!(close(srgb_to_lab([0, 0, 0]), [0.0, 0.0, 0.0]));
        assert!(close(srgb_to_lab([255, 0, 0]), [53.24, 80.09, 67.20]));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Fingerprint::of_bytes(b"not an image").is_err());
    }
}
