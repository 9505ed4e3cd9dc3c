//! Qwen2-VL's image processor, as transformers' `Qwen2VLImageProcessor`
//! does it: `smart_resize` to multiples of patch × merge within the pixel
//! budget, bicubic antialiased resize (libtorch's own kernel on uint8, the
//! one torchvision calls), CLIP mean/std, then patches flattened in the
//! merge-block order the vision tower expects.

use anyhow::{Context, Result, anyhow, ensure};
use serde::Deserialize;
use std::path::Path;
use tch::{Kind, Tensor};

/// `preprocessor_config.json`, the fields that matter here.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ProcessorConfig {
    #[serde(default)]
    pub min_pixels: Option<usize>,
    #[serde(default)]
    pub max_pixels: Option<usize>,
    #[serde(default)]
    pub size: Option<SizeConfig>,
    #[serde(default = "clip_mean")]
    pub image_mean: [f64; 3],
    #[serde(default = "clip_std")]
    pub image_std: [f64; 3],
    #[serde(default = "one_255")]
    pub rescale_factor: f64,
    #[serde(default = "yes")]
    pub do_resize: bool,
    #[serde(default = "yes")]
    pub do_rescale: bool,
    #[serde(default = "yes")]
    pub do_normalize: bool,
    #[serde(default = "patch")]
    pub patch_size: usize,
    #[serde(default = "two")]
    pub temporal_patch_size: usize,
    #[serde(default = "two")]
    pub merge_size: usize,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SizeConfig {
    #[serde(default)]
    pub shortest_edge: Option<usize>,
    #[serde(default)]
    pub longest_edge: Option<usize>,
}

fn clip_mean() -> [f64; 3] {
    [0.48145466, 0.4578275, 0.40821073]
}
fn clip_std() -> [f64; 3] {
    [0.26862954, 0.26130258, 0.27577711]
}
fn one_255() -> f64 {
    1.0 / 255.0
}
fn yes() -> bool {
    true
}
fn patch() -> usize {
    14
}
fn two() -> usize {
    2
}

/// One image ready for the vision tower.
#[derive(Debug)]
pub struct ProcessedImage {
    /// (t·h·w, channels · temporal_patch · patch²), f32 on the CPU.
    pub pixel_values: Tensor,
    /// (t, h, w) in patches.
    pub grid_thw: [i64; 3],
}

impl ProcessedImage {
    /// `<|image_pad|>` tokens this image takes in the prompt.
    pub fn num_tokens(&self, merge_size: usize) -> usize {
        (self.grid_thw.iter().product::<i64>() as usize) / (merge_size * merge_size)
    }
}

impl Clone for ProcessedImage {
    fn clone(&self) -> Self {
        Self {
            pixel_values: self.pixel_values.shallow_clone(),
            grid_thw: self.grid_thw,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ImageProcessor {
    pub config: ProcessorConfig,
    pub min_pixels: usize,
    pub max_pixels: usize,
}

impl ImageProcessor {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: ProcessorConfig =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Self::new(config).with_context(|| format!("in {}", path.display()))
    }

    pub fn new(config: ProcessorConfig) -> Result<Self> {
        // transformers: min/max_pixels override size.{shortest,longest}_edge.
        let size = config.size.as_ref();
        let min_pixels = config
            .min_pixels
            .or(size.and_then(|s| s.shortest_edge))
            .unwrap_or(56 * 56);
        let max_pixels = config
            .max_pixels
            .or(size.and_then(|s| s.longest_edge))
            .unwrap_or(28 * 28 * 1280);
        ensure!(
            min_pixels > 0 && min_pixels <= max_pixels,
            "preprocessor_config: min_pixels {min_pixels} must be in 1..=max_pixels {max_pixels}"
        );
        ensure!(
            config.patch_size > 0 && config.merge_size > 0 && config.temporal_patch_size > 0,
            "preprocessor_config: patch_size, merge_size and temporal_patch_size must be positive"
        );
        Ok(Self {
            config,
            min_pixels,
            max_pixels,
        })
    }

    pub fn factor(&self) -> usize {
        self.config.patch_size * self.config.merge_size
    }

    /// Size after `smart_resize`, (height, width).
    pub fn target_size(&self, height: usize, width: usize) -> Result<(usize, usize)> {
        smart_resize(
            height,
            width,
            self.factor(),
            self.min_pixels,
            self.max_pixels,
        )
    }

    /// Decodes and processes encoded image bytes (JPEG/PNG).
    pub fn process_bytes(&self, bytes: &[u8]) -> Result<ProcessedImage> {
        crate::data::check_image(bytes).map_err(|e| anyhow!("{e}"))?;
        let img = image::load_from_memory(bytes)
            .map_err(|e| anyhow!("corrupt image: {e}"))?
            .to_rgb8();
        let (w, h) = img.dimensions();
        ensure!(w > 0 && h > 0, "image has empty size {w}x{h}");
        let hwc = Tensor::from_slice(img.as_raw()).view([h as i64, w as i64, 3]);
        self.process_hwc(&hwc)
    }

    /// Processes a uint8 (height, width, 3) tensor.
    pub fn process_hwc(&self, hwc: &Tensor) -> Result<ProcessedImage> {
        let (h, w) = match hwc.size().as_slice() {
            &[h, w, 3] if h > 0 && w > 0 => (h as usize, w as usize),
            s => anyhow::bail!("image tensor must be (height, width, 3) and non-empty, got {s:?}"),
        };
        let c = &self.config;
        let image = hwc.permute([2, 0, 1]).unsqueeze(0);
        let (rh, rw) = if c.do_resize {
            self.target_size(h, w)?
        } else {
            (h, w)
        };
        let resized = if (rh, rw) != (h, w) {
            image.internal_upsample_bicubic2d_aa([rh as i64, rw as i64], false, None, None)
        } else {
            image
        };
        let mut x = resized.to_kind(Kind::Float);
        // transformers fuses the two: (x - mean·255) / (std·255).
        let (scale, mean, std) = match (c.do_rescale, c.do_normalize) {
            (true, true) => (
                1.0,
                c.image_mean.map(|m| m / c.rescale_factor),
                c.image_std.map(|s| s / c.rescale_factor),
            ),
            (true, false) => (c.rescale_factor, [0.0; 3], [1.0; 3]),
            (false, true) => (1.0, c.image_mean, c.image_std),
            (false, false) => (1.0, [0.0; 3], [1.0; 3]),
        };
        if scale != 1.0 {
            x *= scale;
        }
        if c.do_normalize {
            let mean = Tensor::from_slice(&mean.map(|v| v as f32)).view([1, 3, 1, 1]);
            let std = Tensor::from_slice(&std.map(|v| v as f32)).view([1, 3, 1, 1]);
            x = (x - mean) / std;
        }
        let (p, m, tp) = (
            c.patch_size as i64,
            c.merge_size as i64,
            c.temporal_patch_size as i64,
        );
        let (gh, gw) = (rh as i64 / p, rw as i64 / p);
        ensure!(
            gh % m == 0 && gw % m == 0,
            "resized image {rh}x{rw} is not a multiple of patch × merge"
        );
        // [1, C, gh/m, m, p, gw/m, m, p] → [gh/m, gw/m, m, m, C, T, p, p]: a
        // still image repeats over the temporal patch.
        let patches = x
            .reshape([1, 3, gh / m, m, p, gw / m, m, p])
            .permute([0, 2, 5, 3, 6, 1, 4, 7])
            .unsqueeze(6)
            .expand([-1, -1, -1, -1, -1, -1, tp, -1, -1], false)
            .reshape([gh * gw, 3 * tp * p * p]);
        Ok(ProcessedImage {
            pixel_values: patches,
            grid_thw: [1, gh, gw],
        })
    }
}

/// transformers' `smart_resize`: both sides multiples of `factor`, area in
/// `[min_pixels, max_pixels]`, aspect ratio kept as closely as it can be.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize)> {
    ensure!(
        height > 0 && width > 0,
        "image has empty size {width}x{height}"
    );
    let (hf, wf, f) = (height as f64, width as f64, factor as f64);
    let ratio = hf.max(wf) / hf.min(wf);
    ensure!(
        ratio <= 200.0,
        "image {width}x{height}: aspect ratio {ratio:.1} is above 200"
    );
    // Python's round() rounds halves to even.
    let mut h_bar = (hf / f).round_ties_even() * f;
    let mut w_bar = (wf / f).round_ties_even() * f;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = ((hf * wf) / max_pixels as f64).sqrt();
        h_bar = f.max((hf / beta / f).floor() * f);
        w_bar = f.max((wf / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (hf * wf)).sqrt();
        h_bar = (hf * beta / f).ceil() * f;
        w_bar = (wf * beta / f).ceil() * f;
    }
    Ok((h_bar as usize, w_bar as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(min: usize, max: usize) -> ImageProcessor {
        ImageProcessor::new(ProcessorConfig {
            min_pixels: Some(min),
            max_pixels: Some(max),
            size: None,
            image_mean: clip_mean(),
            image_std: clip_std(),
            rescale_factor: one_255(),
            do_resize: true,
            do_rescale: true,
            do_normalize: true,
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
        })
        .unwrap()
    }

    #[test]
    fn smart_resize_matches_python() {
        // Values from transformers' smart_resize.
        assert_eq!(smart_resize(56, 56, 28, 3136, 65536).unwrap(), (56, 56));
        assert_eq!(smart_resize(20, 20, 28, 3136, 65536).unwrap(), (56, 56));
        assert_eq!(smart_resize(300, 41, 28, 3136, 65536).unwrap(), (308, 28));
        assert_eq!(smart_resize(330, 400, 28, 3136, 65536).unwrap(), (224, 280));
        // 42 / 28 = 1.5 and 70 / 28 = 2.5 round to even.
        assert_eq!(smart_resize(42, 70, 28, 784, 1 << 30).unwrap(), (56, 56));
        assert!(smart_resize(10, 2500, 28, 3136, 65536).is_err());
        assert!(smart_resize(0, 5, 28, 3136, 65536).is_err());
    }

    #[test]
    fn a_56px_image_is_16_patches_and_4_tokens() {
        let p = processor(56 * 56, 84 * 84);
        let img = Tensor::zeros([56, 56, 3], (Kind::Uint8, tch::Device::Cpu));
        let out = p.process_hwc(&img).unwrap();
        assert_eq!(out.pixel_values.size(), vec![16, 1176]);
        assert_eq!(out.grid_thw, [1, 4, 4]);
        assert_eq!(out.num_tokens(2), 4);
    }

    #[test]
    fn corrupt_and_empty_images_are_errors() {
        let p = processor(56 * 56, 84 * 84);
        let err = p
            .process_bytes(b"not an image at all")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an image"), "{err}");
        let mut png = Vec::new();
        image::RgbImage::new(8, 8)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let err = p
            .process_bytes(&png[..png.len() / 2])
            .unwrap_err()
            .to_string();
        assert!(err.contains("corrupt") || err.contains("image"), "{err}");
        let empty = Tensor::zeros([0, 5, 3], (Kind::Uint8, tch::Device::Cpu));
        assert!(p.process_hwc(&empty).is_err());
    }
}
