//! The training forward: teacher-forced per-token log-probs (and entropy)
//! of whole transcripts, and its gradient-checkpointed backward, which keeps
//! only each decoder layer's input and recomputes the layer on the way back.

use super::image::ProcessedImage;
use super::layers::Mode;
use super::qwen::{QwenVl, VisionInput};
use super::rope::{positions_tensor, rope_positions};
use super::text::AttnMask;
use crate::policy::TokenScores;
use anyhow::{Result, ensure};
use tch::{Kind, Tensor};

/// A right-padded batch of transcripts, ready for the model.
pub struct Batch {
    pub ids: Tensor,
    pub positions: Tensor,
    pub pixel_values: Option<Tensor>,
    pub grids: Vec<[i64; 3]>,
    /// (B, L) f32: 1 where a token is predicted (0 < t < len).
    pub valid: Tensor,
    /// Flat indices into the (B, L-1) predicting positions whose scores are
    /// wanted; `None`: all. Training reads only the response tokens, a few
    /// percent of a search transcript, so the vocab projection runs on those.
    pub score_at: Option<Tensor>,
    pub len: i64,
}

impl Batch {
    /// `images[i]` are transcript i's processed images, in order. With
    /// `only`, scores are computed where `only[i][t]` is 1 and are 0 elsewhere.
    pub fn new(
        model: &QwenVl,
        tokens: &[&[i64]],
        images: &[Vec<ProcessedImage>],
        only: Option<&[&[u8]]>,
    ) -> Result<Self> {
        let device = model.device();
        let b = tokens.len();
        ensure!(b > 0, "scoring an empty batch");
        let len = tokens.iter().map(|t| t.len()).max().unwrap_or(0).max(1);
        let merge = model.cfg.vision.spatial_merge_size as i64;
        let pad = if model.cfg.image_token_id == 0 { 1 } else { 0 };
        let mut ids = vec![pad; b * len];
        let mut valid = vec![0f32; b * len];
        let mut rows = Vec::with_capacity(b);
        let mut pv = Vec::new();
        let mut grids = Vec::new();
        for (i, (toks, imgs)) in tokens.iter().zip(images).enumerate() {
            ids[i * len..i * len + toks.len()].copy_from_slice(toks);
            for v in valid[i * len + 1..i * len + toks.len().max(1)].iter_mut() {
                *v = 1.0;
            }
            let merged: Vec<[i64; 3]> = imgs
                .iter()
                .map(|im| {
                    [
                        im.grid_thw[0],
                        im.grid_thw[1] / merge,
                        im.grid_thw[2] / merge,
                    ]
                })
                .collect();
            let (pos, _) = rope_positions(toks, model.cfg.image_token_id, &merged, 0)
                .map_err(|e| anyhow::anyhow!("transcript {i}: {e}"))?;
            rows.push(pos);
            for im in imgs {
                pv.push(im.pixel_values.shallow_clone());
                grids.push(im.grid_thw);
            }
        }
        let score_at = match only {
            None => None,
            Some(masks) => {
                ensure!(
                    masks.len() == b,
                    "{} masks for {b} transcripts",
                    masks.len()
                );
                let step = len as i64 - 1;
                let mut idx = Vec::new();
                for (i, m) in masks.iter().enumerate() {
                    let n = m.len().min(tokens[i].len());
                    for (t, &on) in m.iter().enumerate().take(n).skip(1) {
                        if on != 0 {
                            idx.push(i as i64 * step + t as i64 - 1);
                        }
                    }
                }
                Some(Tensor::from_slice(&idx).to_device(device))
            }
        };
        Ok(Self {
            score_at,
            ids: Tensor::from_slice(&ids)
                .view([b as i64, len as i64])
                .to_device(device),
            positions: positions_tensor(&rows, len, device),
            pixel_values: (!pv.is_empty()).then(|| Tensor::cat(&pv, 0)),
            grids,
            valid: Tensor::from_slice(&valid)
                .view([b as i64, len as i64])
                .to_device(device),
            len: len as i64,
        })
    }

    fn vision(&self) -> Option<VisionInput<'_>> {
        self.pixel_values.as_ref().map(|pv| VisionInput {
            pixel_values: pv,
            grids: &self.grids,
        })
    }
}

/// Embeddings of the batch (vision tower included).
pub fn embed(model: &QwenVl, batch: &Batch, mode: Mode, vision_grad: bool) -> Result<Tensor> {
    model.embed(&batch.ids, batch.vision(), mode, vision_grad)
}

/// Log-probs (and entropy) from final hidden states (B, L, D).
pub fn scores_from_hidden(
    model: &QwenVl,
    batch: &Batch,
    hidden: &Tensor,
    temperature: f64,
    with_entropy: bool,
) -> TokenScores {
    let len = batch.len;
    let b = hidden.size()[0];
    let d = hidden.size()[2];
    let h = hidden.narrow(1, 0, len - 1);
    let next = batch.ids.narrow(1, 1, len - 1);
    // Rows of (B·(L-1), ·) that get a projection, then scattered back.
    let (h, next) = match &batch.score_at {
        None => (h.reshape([-1, d]), next.reshape([-1])),
        Some(idx) => (
            h.reshape([-1, d]).index_select(0, idx),
            next.reshape([-1]).index_select(0, idx),
        ),
    };
    let logits = model.text.logits(&h).to_kind(Kind::Float) / temperature;
    let lse = logits.logsumexp([-1], false);
    let picked = logits.gather(1, &next.unsqueeze(-1), false).squeeze_dim(-1) - &lse;
    let zero = Tensor::zeros([b, 1], (Kind::Float, hidden.device()));
    let to_grid = |flat: Tensor| -> Tensor {
        let grid =
            match &batch.score_at {
                None => flat,
                Some(idx) => Tensor::zeros([b * (len - 1)], (Kind::Float, hidden.device()))
                    .index_put(&[Some(idx.shallow_clone())], &flat, false),
            };
        Tensor::cat(&[&zero, &grid.view([b, len - 1])], 1) * &batch.valid
    };
    let entropy = with_entropy.then(|| {
        let p = (&logits - lse.unsqueeze(-1)).exp();
        to_grid(&lse - (p * &logits).sum_dim_intlist(-1, false, Kind::Float))
    });
    TokenScores {
        logprobs: to_grid(picked),
        entropy,
    }
}

/// The plain training forward; records autograd unless under `no_grad`.
pub fn score(
    model: &QwenVl,
    batch: &Batch,
    temperature: f64,
    with_entropy: bool,
    mode: Mode,
    vision_grad: bool,
) -> Result<TokenScores> {
    let embeds = embed(model, batch, mode, vision_grad)?;
    let hidden = model.decode(&embeds, &batch.positions, &AttnMask::Causal, None, mode);
    Ok(scores_from_hidden(
        model,
        batch,
        &hidden,
        temperature,
        with_entropy,
    ))
}

/// Gradient checkpointing: forward without autograd keeping each layer's
/// input, the loss's backward from the last hidden state, then each layer
/// recomputed with autograd in reverse and back-propagated with the
/// surrogate (out · grad_out).sum(). `reseed(l)` is called before every run
/// of layer l, so dropout draws the same masks on both passes.
#[allow(clippy::too_many_arguments)]
pub fn backward_checkpointed(
    model: &QwenVl,
    batch: &Batch,
    temperature: f64,
    with_entropy: bool,
    mode: Mode,
    embed_grad: bool,
    vision_grad: bool,
    reseed: &dyn Fn(usize),
    loss: &mut dyn FnMut(&TokenScores) -> Result<Tensor>,
) -> Result<()> {
    let (cos, sin) = model.text.rope.tables(&batch.positions, model.kind());
    let layers = &model.text.layers;
    let mut inputs = Vec::with_capacity(layers.len() + 1);
    inputs.push(tch::no_grad(|| embed(model, batch, mode, false))?);
    for (l, layer) in layers.iter().enumerate() {
        reseed(l);
        let x = inputs.last().expect("embeddings");
        let y = tch::no_grad(|| layer.forward(x, &cos, &sin, &AttnMask::Causal, None, mode));
        inputs.push(y);
    }
    let top = inputs
        .pop()
        .expect("last layer output")
        .detach()
        .set_requires_grad(true);
    let hidden = model.text.norm.forward(&top);
    let scores = scores_from_hidden(model, batch, &hidden, temperature, with_entropy);
    loss(&scores)?.backward();
    let mut grad = top.grad();
    for (l, layer) in layers.iter().enumerate().rev() {
        reseed(l);
        let x = inputs
            .pop()
            .expect("layer input")
            .detach()
            .set_requires_grad(true);
        let y = layer.forward(&x, &cos, &sin, &AttnMask::Causal, None, mode);
        (y * &grad).sum(Kind::Float).backward();
        grad = x.grad();
    }
    if embed_grad || vision_grad {
        let e = embed(model, batch, mode, vision_grad)?;
        (e * &grad).sum(Kind::Float).backward();
    }
    Ok(())
}
