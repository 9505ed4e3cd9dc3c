//! The building blocks shared by the vision tower and the decoder.

use super::lora::{LoraAdapter, LoraOptions};
use super::weights::{Init, ParamBuilder};
use anyhow::Result;
use tch::{Kind, Tensor};

/// How a forward runs: with adapters or without (the frozen reference),
/// with dropout (training) or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    pub adapters: bool,
    pub train: bool,
}

impl Mode {
    pub const EVAL: Mode = Mode {
        adapters: true,
        train: false,
    };
    pub const TRAIN: Mode = Mode {
        adapters: true,
        train: true,
    };
    pub const REFERENCE: Mode = Mode {
        adapters: false,
        train: false,
    };
}

pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub lora: Option<LoraAdapter>,
    /// The module's hub name, e.g. `model.layers.0.self_attn.q_proj`.
    pub name: String,
}

impl Linear {
    pub fn new(
        pb: &mut ParamBuilder,
        prefix: &str,
        in_dim: i64,
        out_dim: i64,
        bias: bool,
    ) -> Result<Self> {
        let weight = pb.get(
            &format!("{prefix}.weight"),
            &[out_dim, in_dim],
            Init::Normal,
        )?;
        let bias = if bias {
            Some(pb.get(&format!("{prefix}.bias"), &[out_dim], Init::Zeros)?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            lora: None,
            name: prefix.to_string(),
        })
    }

    pub fn add_lora(&mut self, opts: &LoraOptions) {
        let s = self.weight.size();
        self.lora = Some(LoraAdapter::new(
            &self.name,
            s[1],
            s[0],
            opts,
            self.weight.kind(),
            self.weight.device(),
        ));
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let y = x.linear(&self.weight, self.bias.as_ref());
        match &self.lora {
            Some(l) if mode.adapters => y + l.forward(x, mode.train),
            _ => y,
        }
    }

    /// The weight with the adapter merged in.
    pub fn merged_weight(&self) -> Tensor {
        match &self.lora {
            Some(l) => (self.weight.detach().to_kind(Kind::Float) + l.delta().to_kind(Kind::Float))
                .to_kind(self.weight.kind()),
            None => self.weight.detach(),
        }
    }
}

/// RMSNorm computed in f32 like transformers, scaled in the input dtype.
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn new(pb: &mut ParamBuilder, name: &str, dim: i64, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: pb.get(&format!("{name}.weight"), &[dim], Init::Ones)?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let d = *x.size().last().expect("a last dim");
        match x.kind() {
            // One fused op; same math as below.
            Kind::Float => x.rms_norm([d], Some(&self.weight), self.eps),
            kind => {
                let normed = x
                    .to_kind(Kind::Float)
                    .rms_norm([d], None::<Tensor>, self.eps);
                &self.weight * normed.to_kind(kind)
            }
        }
    }
}

/// SwiGLU: down(silu(gate(x)) · up(x)).
pub struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    pub fn new(
        pb: &mut ParamBuilder,
        prefix: &str,
        dim: i64,
        hidden: i64,
        bias: bool,
    ) -> Result<Self> {
        Ok(Self {
            gate: Linear::new(pb, &format!("{prefix}.gate_proj"), dim, hidden, bias)?,
            up: Linear::new(pb, &format!("{prefix}.up_proj"), dim, hidden, bias)?,
            down: Linear::new(pb, &format!("{prefix}.down_proj"), hidden, dim, bias)?,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Tensor {
        let g = self.gate.forward(x, mode).silu();
        self.down.forward(&(g * self.up.forward(x, mode)), mode)
    }
}

/// Rotates half the last dim: (x1, x2) → (−x2, x1).
pub fn rotate_half(x: &Tensor) -> Tensor {
    let d = *x.size().last().expect("a last dim");
    let x1 = x.narrow(-1, 0, d / 2);
    let x2 = x.narrow(-1, d / 2, d / 2);
    Tensor::cat(&[-x2, x1], -1)
}
