//! `[model]` → a policy. The loop, export and benches are generic over the
//! policy; they reach the one the config names through a [`PolicyVisitor`],
//! so each family is monomorphised and no dyn layer sits in the hot path.
//! One arm per `model.kind`.

use super::config::{ModelConfig, ModelKind};
use crate::model::{LoraOptions, PolicyOptions, QwenVlPolicy};
use crate::policy::TrainablePolicy;
use crate::testkit::BigramPolicy;
use anyhow::{Context, Result, bail};
use std::path::Path;
use tch::{Device, Kind};

/// What to do with the policy once it is built.
pub trait PolicyVisitor {
    type Output;
    fn visit<P: TrainablePolicy>(self, policy: P) -> Result<Self::Output>;
}

/// `<|im_end|>` bias of a random bigram: keeps sampled turns short.
pub const BIGRAM_IM_END_BIAS: f64 = 2.0;

/// Builds the policy `cfg` describes (random parts drawn from `seed`) and
/// hands it to `visitor`.
pub fn with_policy<V: PolicyVisitor>(
    cfg: &ModelConfig,
    seed: u64,
    visitor: V,
) -> Result<V::Output> {
    match cfg.kind {
        ModelKind::Bigram => {
            let policy = if cfg.path.is_empty() {
                BigramPolicy::new(seed, BIGRAM_IM_END_BIAS)
            } else {
                BigramPolicy::load(Path::new(&cfg.path))
                    .with_context(|| format!("model.path = {:?}", cfg.path))?
            };
            visitor.visit(policy)
        }
        ModelKind::Qwen2_5Vl => {
            let path = Path::new(&cfg.path);
            let policy = QwenVlPolicy::load(path, &policy_options(cfg)?)
                .with_context(|| format!("model.path = {:?}", cfg.path))?;
            visitor.visit(policy)
        }
    }
}

/// `[model]`'s dtype, device, freezing, checkpointing and LoRA for the Qwen policy.
pub fn policy_options(cfg: &ModelConfig) -> Result<PolicyOptions> {
    Ok(PolicyOptions {
        dtype: dtype(cfg)?,
        device: device(cfg)?,
        freeze_vision: cfg.freeze_vision,
        gradient_checkpointing: cfg.gradient_checkpointing,
        lora: (cfg.lora.rank > 0).then(|| LoraOptions {
            rank: cfg.lora.rank,
            alpha: cfg.lora.alpha,
            dropout: cfg.lora.dropout,
            target_modules: cfg.lora.target_modules.clone(),
        }),
    })
}

/// `model.dtype` as a tensor kind.
pub fn dtype(cfg: &ModelConfig) -> Result<Kind> {
    Ok(match cfg.dtype.as_str() {
        "bf16" => Kind::BFloat16,
        "f16" => Kind::Half,
        "f32" => Kind::Float,
        other => bail!("model.dtype = {other:?}: expected \"bf16\", \"f16\" or \"f32\""),
    })
}

/// `model.device`; "auto" is the first CUDA device when there is one.
pub fn device(cfg: &ModelConfig) -> Result<Device> {
    let cuda = |n: usize| {
        if n < tch::Cuda::device_count() as usize {
            Ok(Device::Cuda(n))
        } else {
            bail!(
                "model.device = {:?}, but {} CUDA device(s) are visible",
                cfg.device,
                tch::Cuda::device_count()
            )
        }
    };
    match cfg.device.as_str() {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => cuda(n),
            None => bail!(
                "model.device = {other:?}: expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Names;
    impl PolicyVisitor for Names {
        type Output = Vec<String>;
        fn visit<P: TrainablePolicy>(self, p: P) -> Result<Vec<String>> {
            Ok(p.trainable_parameters()
                .into_iter()
                .map(|(n, _)| n)
                .collect())
        }
    }

    #[test]
    fn builds_the_bigram_and_names_what_it_cannot_build() {
        let mut cfg = ModelConfig {
            kind: ModelKind::Bigram,
            ..Default::default()
        };
        assert_eq!(with_policy(&cfg, 1, Names).unwrap(), vec!["bigram.weight"]);
        cfg.path = "/nonexistent/bigram".into();
        let err = format!("{:#}", with_policy(&cfg, 1, Names).unwrap_err());
        assert!(
            err.contains("model.path") && err.contains("/nonexistent/bigram"),
            "{err}"
        );
        cfg.kind = ModelKind::Qwen2_5Vl;
        let err = format!("{:#}", with_policy(&cfg, 1, Names).unwrap_err());
        assert!(err.contains("/nonexistent/bigram"), "{err}");
        cfg.dtype = "f32".into();
        cfg.device = "cpu".into();
        assert_eq!(
            (dtype(&cfg).unwrap(), device(&cfg).unwrap()),
            (Kind::Float, Device::Cpu)
        );
        cfg.device = "cuda:99".into();
        assert!(device(&cfg).unwrap_err().to_string().contains("cuda:99"));
    }
}
