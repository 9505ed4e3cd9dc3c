//! The Qwen2.5-VL vision tower: a bias-free Conv3d patch embedding (done as
//! one matmul over flattened patches), 2-D rotary embeddings, RMSNorm +
//! SwiGLU blocks attending within windows (full attention only in
//! `fullatt_block_indexes`), and the 2×2 patch merger into the decoder's
//! width. Window order and positions follow transformers' `vision_utils`.

use super::config::QwenVlConfig;
use super::layers::{Linear, Mlp, Mode, RmsNorm};
use super::weights::{Init, ParamBuilder};
use anyhow::{Result, ensure};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

pub struct VisionBlock {
    norm1: RmsNorm,
    norm2: RmsNorm,
    qkv: Linear,
    proj: Linear,
    mlp: Mlp,
    heads: i64,
}

pub struct VisionTower {
    /// Conv3d weight, (hidden, C, T, p, p); used as a (hidden, C·T·p²) matmul.
    patch_weight: Tensor,
    patch_dim: i64,
    blocks: Vec<VisionBlock>,
    ln_q: RmsNorm,
    fc1: Linear,
    fc2: Linear,
    inv_freq: Tensor,
    fullatt: Vec<usize>,
    merge: i64,
    window_units: i64,
    hidden: i64,
}

/// Attention segments (images, or windows) as groups of equal length, so
/// each group is one batched attention call.
pub struct Segments {
    groups: Vec<(i64, Tensor)>,
    /// Undoes the grouping's gather; None when there is one segment.
    inverse: Option<Tensor>,
    total: i64,
}

impl Segments {
    pub fn new(lengths: &[i64], device: Device) -> Self {
        let total: i64 = lengths.iter().sum();
        let live: Vec<i64> = lengths.iter().copied().filter(|&l| l > 0).collect();
        if live.len() <= 1 {
            return Self {
                groups: vec![(total, Tensor::new())],
                inverse: None,
                total,
            };
        }
        let mut by_len: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        let mut start = 0;
        for &l in lengths {
            if l > 0 {
                by_len.entry(l).or_default().extend(start..start + l);
            }
            start += l;
        }
        let mut order = Vec::with_capacity(total as usize);
        let groups = by_len
            .into_iter()
            .map(|(l, idx)| {
                order.extend_from_slice(&idx);
                (l, Tensor::from_slice(&idx).to_device(device))
            })
            .collect();
        let mut inverse = vec![0i64; total as usize];
        for (pos, &i) in order.iter().enumerate() {
            inverse[i as usize] = pos as i64;
        }
        Self {
            groups,
            inverse: Some(Tensor::from_slice(&inverse).to_device(device)),
            total,
        }
    }

    /// Attention of (N, H, d) queries/keys/values within each segment.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
        let (h, d) = (q.size()[1], q.size()[2]);
        let run = |q: Tensor, k: Tensor, v: Tensor, len: i64| {
            let shape = [-1, len, h, d];
            let out = Tensor::scaled_dot_product_attention::<Tensor>(
                &q.reshape(shape).transpose(1, 2),
                &k.reshape(shape).transpose(1, 2),
                &v.reshape(shape).transpose(1, 2),
                None,
                0.0,
                false,
                None,
                false,
            );
            out.transpose(1, 2).reshape([-1, h * d])
        };
        match &self.inverse {
            None => run(
                q.shallow_clone(),
                k.shallow_clone(),
                v.shallow_clone(),
                self.total,
            ),
            Some(inv) => {
                let outs: Vec<Tensor> = self
                    .groups
                    .iter()
                    .map(|(len, idx)| {
                        run(
                            q.index_select(0, idx),
                            k.index_select(0, idx),
                            v.index_select(0, idx),
                            *len,
                        )
                    })
                    .collect();
                Tensor::cat(&outs, 0).index_select(0, inv)
            }
        }
    }
}

/// Per-patch (h, w) positions, in merge-block order.
pub fn patch_positions(grids: &[[i64; 3]], merge: i64) -> Vec<[i64; 2]> {
    let mut out = Vec::new();
    for &[t, h, w] in grids {
        for _ in 0..t {
            for bh in 0..h / merge {
                for bw in 0..w / merge {
                    for i in 0..merge {
                        for j in 0..merge {
                            out.push([bh * merge + i, bw * merge + j]);
                        }
                    }
                }
            }
        }
    }
    out
}

/// transformers' `get_vision_window_index`: the order of merged units that
/// groups them by window, and each window's length in patches.
pub fn window_index(grids: &[[i64; 3]], merge: i64, window_units: i64) -> (Vec<i64>, Vec<i64>) {
    let unit = merge * merge;
    let (mut index, mut lens) = (Vec::new(), Vec::new());
    let mut offset = 0;
    for &[t, h, w] in grids {
        let (gh, gw) = (h / merge, w / merge);
        let nwh = (gh + window_units - gh % window_units) / window_units;
        let nww = (gw + window_units - gw % window_units) / window_units;
        for ti in 0..t {
            for wr in 0..nwh {
                for wc in 0..nww {
                    let mut n = 0;
                    for r in wr * window_units..((wr + 1) * window_units).min(gh) {
                        for c in wc * window_units..((wc + 1) * window_units).min(gw) {
                            index.push(offset + ti * gh * gw + r * gw + c);
                            n += 1;
                        }
                    }
                    if n > 0 {
                        lens.push(n * unit);
                    }
                }
            }
        }
        offset += t * gh * gw;
    }
    (index, lens)
}

impl VisionTower {
    pub fn new(cfg: &QwenVlConfig, pb: &mut ParamBuilder) -> Result<Self> {
        let v = &cfg.vision;
        let d = v.hidden_size as i64;
        let patch_dim =
            (v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size) as i64;
        let (p, t) = (v.patch_size as i64, v.temporal_patch_size as i64);
        let conv = pb.get(
            "visual.patch_embed.proj.weight",
            &[d, v.in_channels as i64, t, p, p],
            Init::Normal,
        )?;
        let mut blocks = Vec::with_capacity(v.depth);
        for i in 0..v.depth {
            let pre = format!("visual.blocks.{i}");
            blocks.push(VisionBlock {
                norm1: RmsNorm::new(pb, &format!("{pre}.norm1"), d, 1e-6)?,
                norm2: RmsNorm::new(pb, &format!("{pre}.norm2"), d, 1e-6)?,
                qkv: Linear::new(pb, &format!("{pre}.attn.qkv"), d, 3 * d, true)?,
                proj: Linear::new(pb, &format!("{pre}.attn.proj"), d, d, true)?,
                mlp: Mlp::new(
                    pb,
                    &format!("{pre}.mlp"),
                    d,
                    v.intermediate_size as i64,
                    true,
                )?,
                heads: v.num_heads as i64,
            });
        }
        let merge = v.spatial_merge_size as i64;
        let merged = d * merge * merge;
        let ln_q = RmsNorm::new(pb, "visual.merger.ln_q", d, 1e-6)?;
        let fc1 = Linear::new(pb, "visual.merger.mlp.0", merged, merged, true)?;
        let fc2 = Linear::new(
            pb,
            "visual.merger.mlp.2",
            merged,
            v.out_hidden_size as i64,
            true,
        )?;
        // Axial rope: head_dim/4 frequencies, shared by the h and w halves.
        let spatial = (cfg.vision_head_dim() / 2) as i64;
        let exps =
            Tensor::arange_start_step(0, spatial, 2, (Kind::Float, Device::Cpu)) / spatial as f64;
        let inv_freq = Tensor::from(cfg.vision_rope_theta as f32)
            .pow(&exps)
            .reciprocal()
            .to_device(pb.device());
        Ok(Self {
            patch_weight: conv,
            patch_dim,
            blocks,
            ln_q,
            fc1,
            fc2,
            inv_freq,
            fullatt: v.fullatt_block_indexes.clone(),
            merge,
            window_units: (v.window_size / v.spatial_merge_size / v.patch_size) as i64,
            hidden: d,
        })
    }

    pub fn device(&self) -> Device {
        self.patch_weight.device()
    }

    /// (Σ t·h·w, patch_dim) pixel values of images with grids `grids` →
    /// (Σ t·h·w / merge², out_hidden) embeddings, in image order.
    pub fn forward(&self, pixel_values: &Tensor, grids: &[[i64; 3]], mode: Mode) -> Result<Tensor> {
        let n: i64 = grids.iter().map(|g| g.iter().product::<i64>()).sum();
        ensure!(
            pixel_values.size() == [n, self.patch_dim],
            "vision: pixel_values {:?} do not fit grids {grids:?}",
            pixel_values.size()
        );
        for g in grids {
            ensure!(
                g[1] % self.merge == 0 && g[2] % self.merge == 0,
                "vision: grid {g:?} is not a multiple of the merge size {}",
                self.merge
            );
        }
        let device = self.device();
        let unit = self.merge * self.merge;
        let (win, win_lens) = window_index(grids, self.merge, self.window_units);
        let win = Tensor::from_slice(&win).to_device(device);
        let permute = |x: &Tensor| {
            let d = x.size()[1];
            x.reshape([n / unit, unit, d])
                .index_select(0, &win)
                .reshape([n, d])
        };

        let x = pixel_values
            .to_kind(self.patch_weight.kind())
            .to_device(device);
        // A view made here, not at load: it must track requires_grad.
        let w = self.patch_weight.view([self.hidden, self.patch_dim]);
        let mut h = permute(&x.matmul(&w.tr()));

        let pos = patch_positions(grids, self.merge);
        let flat: Vec<i64> = pos.iter().flat_map(|p| p.iter().copied()).collect();
        let pos = Tensor::from_slice(&flat)
            .view([n, 2])
            .to_device(device)
            .to_kind(Kind::Float);
        let freqs = pos.unsqueeze(-1) * self.inv_freq.view([1, 1, -1]); // (n, 2, hd/4)
        let freqs = permute(&freqs.reshape([n, -1])); // (n, hd/2): h then w
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        let (cos, sin) = (emb.cos().unsqueeze(1), emb.sin().unsqueeze(1));

        let full_lens: Vec<i64> = grids
            .iter()
            .flat_map(|&[t, hh, ww]| std::iter::repeat_n(hh * ww, t as usize))
            .collect();
        let full = Segments::new(&full_lens, device);
        let windows = Segments::new(&win_lens, device);
        for (i, blk) in self.blocks.iter().enumerate() {
            let segs = if self.fullatt.contains(&i) {
                &full
            } else {
                &windows
            };
            h = blk.forward(&h, &cos, &sin, segs, mode);
        }
        let merged = self.ln_q.forward(&h).view([n / unit, self.hidden * unit]);
        let out = self
            .fc2
            .forward(&self.fc1.forward(&merged, mode).gelu("none"), mode);
        Ok(out.index_select(0, &win.argsort(0, false)))
    }
}

impl VisionBlock {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        segs: &Segments,
        mode: Mode,
    ) -> Tensor {
        let n = x.size()[0];
        let qkv = self
            .qkv
            .forward(&self.norm1.forward(x), mode)
            .reshape([n, 3, self.heads, -1]);
        let kind = x.kind();
        let rope = |t: Tensor| {
            let t = t.to_kind(Kind::Float);
            (&t * cos + super::layers::rotate_half(&t) * sin).to_kind(kind)
        };
        let q = rope(qkv.select(1, 0));
        let k = rope(qkv.select(1, 1));
        let v = qkv.select(1, 2);
        let attn = self.proj.forward(&segs.attend(&q, &k, &v), mode);
        let x = x + attn;
        &x + self.mlp.forward(&self.norm2.forward(&x), mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_index_matches_transformers() {
        // A 6x8 merged grid with 4x4 windows (the parity test's "wide"
        // image): windows of 16, 16, 8, 8 units, two of them empty.
        let (idx, lens) = window_index(&[[1, 12, 16]], 2, 4);
        assert_eq!(lens, vec![64, 64, 32, 32]);
        assert_eq!(&idx[..5], &[0, 1, 2, 3, 8]);
        let mut sorted = idx.clone();
        sorted.sort();
        assert_eq!(sorted, (0..48).collect::<Vec<_>>());
    }

    #[test]
    fn positions_are_block_major() {
        let p = patch_positions(&[[1, 2, 4]], 2);
        assert_eq!(&p[..6], &[[0, 0], [0, 1], [1, 0], [1, 1], [0, 2], [0, 3]]);
    }
}
