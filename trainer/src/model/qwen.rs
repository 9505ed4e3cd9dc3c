//! Qwen2.5-VL: the vision tower feeding image embeddings into the decoder
//! at the `<|image_pad|>` positions.

use super::config::QwenVlConfig;
use super::layers::Mode;
use super::lora::LoraOptions;
use super::rope::MRope;
use super::text::{AttnMask, KvSlot, TextModel};
use super::vision::VisionTower;
use super::weights::{self, ParamBuilder, Source};
use anyhow::{Result, ensure};
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub struct QwenVl {
    pub cfg: QwenVlConfig,
    pub visual: VisionTower,
    pub text: TextModel,
    /// Every base weight by hub name, sharing storage with the modules.
    pub params: Vec<(String, Tensor)>,
}

/// Images of one forward: concatenated pixel values and their grids.
pub struct VisionInput<'a> {
    pub pixel_values: &'a Tensor,
    pub grids: &'a [[i64; 3]],
}

impl QwenVl {
    pub fn new(cfg: QwenVlConfig, source: Source, kind: Kind, device: Device) -> Result<Self> {
        let mut pb = ParamBuilder::new(source, kind, device);
        let visual = VisionTower::new(&cfg, &mut pb)?;
        let text = TextModel::new(&cfg, &mut pb)?;
        let params = pb.finish()?;
        Ok(Self {
            cfg,
            visual,
            text,
            params,
        })
    }

    /// config.json and the weights of a model dir.
    pub fn load(dir: &Path, kind: Kind, device: Device) -> Result<Self> {
        let cfg = QwenVlConfig::from_file(&dir.join("config.json"))?;
        let tensors = weights::load_dir(dir)?;
        Self::new(cfg, Source::Loaded(tensors), kind, device)
    }

    /// Random weights (normal(0, std), norms 1, biases 0) from `seed`.
    pub fn random(cfg: QwenVlConfig, seed: u64, kind: Kind, device: Device) -> Result<Self> {
        let std = cfg
            .raw
            .pointer("/text_config/initializer_range")
            .or_else(|| cfg.raw.get("initializer_range"))
            .and_then(|v| v.as_f64())
            .unwrap_or(0.02);
        Self::new(cfg, Source::Random { std, seed }, kind, device)
    }

    pub fn add_lora(&mut self, opts: &LoraOptions) -> Result<()> {
        opts.validate()?;
        tch::no_grad(|| self.text.add_lora(opts));
        Ok(())
    }

    pub fn device(&self) -> Device {
        self.text.embed.device()
    }

    pub fn kind(&self) -> Kind {
        self.text.kind()
    }

    pub fn rope(&self) -> &MRope {
        &self.text.rope
    }

    /// Token embeddings with the images' embeddings at the image tokens.
    pub fn embed(
        &self,
        ids: &Tensor,
        vision: Option<VisionInput>,
        mode: Mode,
        vision_grad: bool,
    ) -> Result<Tensor> {
        let embeds = self.text.embed_tokens(ids);
        let Some(v) = vision.filter(|v| !v.grids.is_empty()) else {
            let n = i64::try_from(ids.eq(self.cfg.image_token_id).sum(Kind::Int64))?;
            ensure!(n == 0, "{n} image tokens but no images");
            return Ok(embeds);
        };
        let run = || self.visual.forward(v.pixel_values, v.grids, mode);
        let feats = if vision_grad {
            run()?
        } else {
            tch::no_grad(run)?
        };
        let mask = ids.eq(self.cfg.image_token_id);
        let n = i64::try_from(mask.sum(Kind::Int64))?;
        ensure!(
            n == feats.size()[0],
            "{n} image tokens for {} image features",
            feats.size()[0]
        );
        Ok(embeds.masked_scatter(&mask.unsqueeze(-1), &feats.to_kind(embeds.kind())))
    }

    /// Hidden states after the final norm, for (B, T) embeddings at (3, B, T)
    /// positions.
    pub fn decode(
        &self,
        embeds: &Tensor,
        positions: &Tensor,
        mask: &AttnMask,
        kv: Option<(&[Tensor], &[Tensor], i64)>,
        mode: Mode,
    ) -> Tensor {
        let (cos, sin) = self.text.rope.tables(positions, embeds.kind());
        let mut h = embeds.shallow_clone();
        for (i, layer) in self.text.layers.iter().enumerate() {
            let slot = kv.map(|(k, v, start)| KvSlot {
                k: &k[i],
                v: &v[i],
                start,
            });
            h = layer.forward(&h, &cos, &sin, mask, slot, mode);
        }
        self.text.norm.forward(&h)
    }

    /// Logits (B, T, V) of a whole sequence, causal, no cache.
    pub fn forward(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        vision: Option<VisionInput>,
    ) -> Result<Tensor> {
        let embeds = self.embed(ids, vision, Mode::EVAL, false)?;
        let h = self.decode(&embeds, positions, &AttnMask::Causal, None, Mode::EVAL);
        Ok(self.text.logits(&h))
    }

    /// Base weights by hub name, adapters merged; tied `lm_head` left out.
    pub fn merged_params(&self) -> Vec<(String, Tensor)> {
        let mut merged = std::collections::HashMap::new();
        for layer in &self.text.layers {
            for (_, lin) in layer.linears() {
                if lin.lora.is_some() {
                    merged.insert(format!("{}.weight", lin.name), lin.merged_weight());
                }
            }
        }
        self.params
            .iter()
            .map(|(n, t)| {
                let t = merged.remove(n).unwrap_or_else(|| t.detach());
                (n.clone(), t)
            })
            .collect()
    }
}
