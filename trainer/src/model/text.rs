//! The Qwen2 decoder: GQA attention with q/k/v biases and M-RoPE, RMSNorm,
//! SwiGLU, tied or untied `lm_head`. Attention reads and writes an optional
//! preallocated KV buffer so decoding appends without copying the prefix.

use super::config::QwenVlConfig;
use super::layers::{Linear, Mlp, Mode, RmsNorm};
use super::lora::LoraOptions;
use super::rope::MRope;
use super::weights::{Init, ParamBuilder};
use anyhow::Result;
use tch::{Kind, Tensor};

/// Which keys each query may see.
pub enum AttnMask {
    /// Plain causal attention over this forward's own tokens.
    Causal,
    /// Every key (one decode step with no padding anywhere).
    All,
    /// (B, 1, T, S) bool, true = may attend.
    Explicit(Tensor),
}

/// A KV buffer pair, (B, kv_heads, capacity, head_dim) each: this forward's
/// keys/values go to columns `start..start + T`, attention reads `..start + T`.
pub struct KvSlot<'a> {
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub start: i64,
}

pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

pub struct DecoderLayer {
    pub input_norm: RmsNorm,
    pub attn: Attention,
    pub post_norm: RmsNorm,
    pub mlp: Mlp,
}

pub struct TextModel {
    pub embed: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    pub lm_head: Tensor,
    pub tied: bool,
    pub rope: MRope,
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &AttnMask,
        kv: Option<KvSlot>,
        mode: Mode,
    ) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        let split = |y: Tensor, heads: i64| y.view([b, t, heads, self.head_dim]).transpose(1, 2);
        let q = split(self.q.forward(x, mode), self.heads);
        let k = split(self.k.forward(x, mode), self.kv_heads);
        let v = split(self.v.forward(x, mode), self.kv_heads);
        let q = super::rope::apply(&q, cos, sin);
        let k = super::rope::apply(&k, cos, sin);
        let (k, v) = match kv {
            Some(slot) => {
                slot.k.narrow(2, slot.start, t).copy_(&k);
                slot.v.narrow(2, slot.start, t).copy_(&v);
                (
                    slot.k.narrow(2, 0, slot.start + t),
                    slot.v.narrow(2, 0, slot.start + t),
                )
            }
            None => (k, v),
        };
        let out = match mask {
            AttnMask::Causal => Tensor::scaled_dot_product_attention::<Tensor>(
                &q, &k, &v, None, 0.0, true, None, true,
            ),
            AttnMask::All => Tensor::scaled_dot_product_attention::<Tensor>(
                &q, &k, &v, None, 0.0, false, None, true,
            ),
            AttnMask::Explicit(m) => {
                Tensor::scaled_dot_product_attention(&q, &k, &v, Some(m), 0.0, false, None, true)
            }
        };
        self.o.forward(
            &out.transpose(1, 2)
                .reshape([b, t, self.heads * self.head_dim]),
            mode,
        )
    }

    fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 4] {
        [
            ("q_proj", &mut self.q),
            ("k_proj", &mut self.k),
            ("v_proj", &mut self.v),
            ("o_proj", &mut self.o),
        ]
    }
}

impl DecoderLayer {
    pub fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &AttnMask,
        kv: Option<KvSlot>,
        mode: Mode,
    ) -> Tensor {
        let h = x + self
            .attn
            .forward(&self.input_norm.forward(x), cos, sin, mask, kv, mode);
        &h + self.mlp.forward(&self.post_norm.forward(&h), mode)
    }

    /// The layer's linear modules by their HF names, for adapters.
    pub fn linears_mut(&mut self) -> Vec<(&'static str, &mut Linear)> {
        let mut out: Vec<(&'static str, &mut Linear)> =
            self.attn.linears_mut().into_iter().collect();
        out.push(("gate_proj", &mut self.mlp.gate));
        out.push(("up_proj", &mut self.mlp.up));
        out.push(("down_proj", &mut self.mlp.down));
        out
    }

    pub fn linears(&self) -> Vec<(&'static str, &Linear)> {
        vec![
            ("q_proj", &self.attn.q),
            ("k_proj", &self.attn.k),
            ("v_proj", &self.attn.v),
            ("o_proj", &self.attn.o),
            ("gate_proj", &self.mlp.gate),
            ("up_proj", &self.mlp.up),
            ("down_proj", &self.mlp.down),
        ]
    }
}

impl TextModel {
    pub fn new(cfg: &QwenVlConfig, pb: &mut ParamBuilder) -> Result<Self> {
        let t = &cfg.text;
        let (d, v) = (t.hidden_size as i64, t.vocab_size as i64);
        let hd = cfg.head_dim() as i64;
        let (heads, kv_heads) = (t.num_attention_heads as i64, cfg.num_kv_heads() as i64);
        let embed = pb.get("model.embed_tokens.weight", &[v, d], Init::Normal)?;
        let mut layers = Vec::with_capacity(t.num_hidden_layers);
        for i in 0..t.num_hidden_layers {
            let pre = format!("model.layers.{i}");
            let a = format!("{pre}.self_attn");
            layers.push(DecoderLayer {
                input_norm: RmsNorm::new(pb, &format!("{pre}.input_layernorm"), d, t.rms_norm_eps)?,
                attn: Attention {
                    q: Linear::new(pb, &format!("{a}.q_proj"), d, heads * hd, true)?,
                    k: Linear::new(pb, &format!("{a}.k_proj"), d, kv_heads * hd, true)?,
                    v: Linear::new(pb, &format!("{a}.v_proj"), d, kv_heads * hd, true)?,
                    o: Linear::new(pb, &format!("{a}.o_proj"), heads * hd, d, false)?,
                    heads,
                    kv_heads,
                    head_dim: hd,
                },
                post_norm: RmsNorm::new(
                    pb,
                    &format!("{pre}.post_attention_layernorm"),
                    d,
                    t.rms_norm_eps,
                )?,
                mlp: Mlp::new(
                    pb,
                    &format!("{pre}.mlp"),
                    d,
                    t.intermediate_size as i64,
                    false,
                )?,
            });
        }
        let norm = RmsNorm::new(pb, "model.norm", d, t.rms_norm_eps)?;
        // A tied checkpoint may still carry lm_head; the tie wins, as in transformers.
        let tied = cfg.tie_word_embeddings;
        let lm_head = if tied {
            if pb.has("lm_head.weight") {
                let _ = pb.get("lm_head.weight", &[v, d], Init::Normal)?;
                pb.params.pop();
            }
            embed.shallow_clone()
        } else {
            pb.get("lm_head.weight", &[v, d], Init::Normal)?
        };
        let rope = MRope::new(
            cfg.head_dim(),
            cfg.rope_theta,
            cfg.mrope_section,
            pb.device(),
        );
        Ok(Self {
            embed,
            layers,
            norm,
            lm_head,
            tied,
            rope,
        })
    }

    pub fn add_lora(&mut self, opts: &LoraOptions) {
        for layer in &mut self.layers {
            for (name, lin) in layer.linears_mut() {
                if opts.targets(name) {
                    lin.add_lora(opts);
                }
            }
        }
    }

    pub fn embed_tokens(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.embed, ids, -1, false, false)
    }

    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        hidden.linear::<Tensor>(&self.lm_head, None)
    }

    pub fn kind(&self) -> Kind {
        self.embed.kind()
    }
}
