//! M-RoPE: 3-D (temporal, height, width) positions for the decoder.
//!
//! Text tokens advance all three together; an image's tokens take
//! (start + t, start + row, start + col) over its merged grid, and the text
//! after it resumes at start + max(rows, cols), as transformers'
//! `get_rope_index` does. The rotary frequencies split head_dim / 2 over
//! t/h/w by `mrope_section`.

use anyhow::{Result, bail, ensure};
use tch::{Device, Kind, Tensor};

/// 3-D positions of `tokens`, starting at `start`; `grids` are the merged
/// (t, h, w) grids of the images whose `image_token` runs appear, in order.
/// Returns the positions and the next free position.
pub fn rope_positions(
    tokens: &[i64],
    image_token: i64,
    grids: &[[i64; 3]],
    start: i64,
) -> Result<(Vec<[i64; 3]>, i64)> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut pos = start;
    let mut images = grids.iter();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] != image_token {
            out.push([pos; 3]);
            pos += 1;
            i += 1;
            continue;
        }
        let Some(&[t, h, w]) = images.next() else {
            bail!(
                "more image placeholders than images ({} given)",
                grids.len()
            );
        };
        let n = (t * h * w) as usize;
        ensure!(
            tokens[i..].len() >= n && tokens[i..i + n].iter().all(|&x| x == image_token),
            "an image of grid {:?} needs {n} consecutive image tokens",
            [t, h, w]
        );
        for ti in 0..t {
            for r in 0..h {
                for c in 0..w {
                    out.push([pos + ti, pos + r, pos + c]);
                }
            }
        }
        pos += h.max(w);
        i += n;
    }
    ensure!(
        images.next().is_none(),
        "fewer image placeholders than images ({} given)",
        grids.len()
    );
    Ok((out, pos))
}

/// Positions as a (3, B, T) tensor from per-row lists padded with `pad`.
pub fn positions_tensor(rows: &[Vec<[i64; 3]>], len: usize, device: Device) -> Tensor {
    let b = rows.len();
    let mut flat = vec![0i64; 3 * b * len];
    for (r, row) in rows.iter().enumerate() {
        for (j, p) in row.iter().take(len).enumerate() {
            for d in 0..3 {
                flat[d * b * len + r * len + j] = p[d];
            }
        }
    }
    Tensor::from_slice(&flat)
        .view([3, b as i64, len as i64])
        .to_device(device)
}

/// Rotary tables for the decoder.
pub struct MRope {
    inv_freq: Tensor,
    section: [i64; 3],
}

impl MRope {
    pub fn new(head_dim: usize, theta: f64, section: [usize; 3], device: Device) -> Self {
        let hd = head_dim as i64;
        let exps = Tensor::arange_start_step(0, hd, 2, (Kind::Float, Device::Cpu)) / hd as f64;
        let inv_freq = Tensor::from(theta as f32)
            .pow(&exps)
            .reciprocal()
            .to_device(device);
        Self {
            inv_freq,
            section: section.map(|s| s as i64),
        }
    }

    /// (cos, signed sin), each (B, 1, T, head_dim) in `kind` (broadcast over
    /// heads), for (3, B, T) positions; see [`apply`].
    pub fn tables(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq; // (3, B, T, hd/2)
        let [s0, s1, s2] = self.section;
        let freq = Tensor::cat(
            &[
                freqs.get(0).narrow(-1, 0, s0),
                freqs.get(1).narrow(-1, s0, s1),
                freqs.get(2).narrow(-1, s0 + s1, s2),
            ],
            -1,
        );
        let emb = Tensor::cat(&[&freq, &freq], -1);
        let sin = freq.sin();
        let signed = Tensor::cat(&[-&sin, sin], -1);
        (
            emb.cos().to_kind(kind).unsqueeze(1),
            signed.to_kind(kind).unsqueeze(1),
        )
    }
}

/// x·cos + rotate_half(x)·sin, with rotate_half(x) = (−x₂, x₁) written as
/// roll(x)·(−sin₁, sin₂): four ops instead of seven, the same numbers.
pub fn apply(x: &Tensor, cos: &Tensor, signed_sin: &Tensor) -> Tensor {
    let d = *x.size().last().expect("a last dim");
    x * cos + x.roll([d / 2], [-1]) * signed_sin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_four_token_image_after_fifteen_text_tokens() {
        // model-notes.md: t = 15,15,15,15, h = 15,15,16,16, w = 15,16,15,16;
        // the text after resumes at 17 (rope delta -2).
        let mut tokens = vec![1; 15];
        tokens.extend([9; 4]);
        tokens.extend([1; 3]);
        let (pos, next) = rope_positions(&tokens, 9, &[[1, 2, 2]], 0).unwrap();
        let img: Vec<[i64; 3]> = pos[15..19].to_vec();
        assert_eq!(
            img,
            vec![[15, 15, 15], [15, 15, 16], [15, 16, 15], [15, 16, 16]]
        );
        assert_eq!(pos[19], [17; 3]);
        assert_eq!(next, 20);
        assert_eq!(next - tokens.len() as i64, -2);
    }

    #[test]
    fn placeholders_and_images_must_agree() {
        assert!(rope_positions(&[9, 9, 9], 9, &[[1, 2, 2]], 0).is_err());
        assert!(rope_positions(&[1, 2], 9, &[[1, 1, 1]], 0).is_err());
        assert!(rope_positions(&[9], 9, &[], 0).is_err());
    }
}
