//! LoRA adapters (Hu et al.), laid out like PEFT's: `A` (rank × in) from a
//! uniform ±1/√in, `B` (out × rank) zeros, so an adapted model starts out
//! equal to its base; output += B·A·dropout(x) · alpha / rank. Merged into
//! the base weight on export.

use anyhow::{Result, ensure};
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct LoraOptions {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Names of the decoder's linear modules to adapt, e.g. `q_proj`, `v_proj`.
    pub target_modules: Vec<String>,
}

impl Default for LoraOptions {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
        }
    }
}

/// The decoder's linear modules an adapter can sit on.
pub const DECODER_LINEARS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl LoraOptions {
    pub fn validate(&self) -> Result<()> {
        ensure!(self.rank > 0, "lora.rank must be positive");
        ensure!(self.alpha > 0.0, "lora.alpha must be positive");
        ensure!(
            (0.0..1.0).contains(&self.dropout),
            "lora.dropout {} must be in [0, 1)",
            self.dropout
        );
        ensure!(
            !self.target_modules.is_empty(),
            "lora.target_modules is empty"
        );
        for m in &self.target_modules {
            ensure!(
                DECODER_LINEARS.contains(&m.as_str()),
                "lora.target_modules: {m:?} is not one of the decoder's linear modules {DECODER_LINEARS:?}"
            );
        }
        Ok(())
    }

    pub fn scaling(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    pub fn targets(&self, module: &str) -> bool {
        self.target_modules.iter().any(|m| m == module)
    }
}

const LORA_SEED: u64 = 0x104a;

pub struct LoraAdapter {
    /// (rank, in), trainable.
    pub a: Tensor,
    /// (out, rank), trainable, zeros at the start.
    pub b: Tensor,
    pub scaling: f64,
    pub dropout: f64,
}

impl LoraAdapter {
    /// `name` (the module's) picks A's random stream: adapters are the same
    /// on every run.
    pub fn new(
        name: &str,
        in_dim: i64,
        out_dim: i64,
        opts: &LoraOptions,
        kind: Kind,
        device: Device,
    ) -> Self {
        let r = opts.rank as i64;
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a = super::weights::seeded_uniform(LORA_SEED, name, &[r, in_dim], -bound, bound);
        let b = Tensor::zeros([out_dim, r], (Kind::Float, Device::Cpu));
        Self {
            a: a.to_kind(kind).to_device(device).set_requires_grad(true),
            b: b.to_kind(kind).to_device(device).set_requires_grad(true),
            scaling: opts.scaling(),
            dropout: opts.dropout,
        }
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let x = if train && self.dropout > 0.0 {
            x.dropout(self.dropout, true)
        } else {
            x.shallow_clone()
        };
        x.linear::<Tensor>(&self.a, None)
            .linear::<Tensor>(&self.b, None)
            * self.scaling
    }

    /// ΔW = B·A·scaling, to add to the base weight.
    pub fn delta(&self) -> Tensor {
        (self.b.detach().matmul(&self.a.detach())) * self.scaling
    }
}
