//! `[model]` → a policy. The loop, export and benches are generic over the
//! policy; they reach the one the config names through a [`PolicyVisitor`],
//! so each family is monomorphised and no dyn layer sits in the hot path.
//! One arm per `model.kind`.

use super::config::{ModelConfig, ModelKind};
use crate::model::{LoraOptions, PolicyOptions, QwenVlPolicy};
use crate::policy::TrainablePolicy;
use crate::testkit::BigramPolicy;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind};

/// What to do with the policy once it is built.
pub trait PolicyVisitor {
    type Output;
    fn visit<P: TrainablePolicy>(self, policy: P) -> Result<Self::Output>;
}

/// `<|im_end|>` bias of a random bigram: keeps sampled turns short.
pub const BIGRAM_IM_END_BIAS: f64 = 2.0;

/// How the policy's weights start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyInit {
    /// The weights in `model.path`.
    #[default]
    Load,
    /// Fresh weights from the seed (the demo's tiny model has none yet).
    Random,
}

/// `model_type` of the bigram test policy's export.
pub const BIGRAM_MODEL_TYPE: &str = "mmsr-bigram";
const QWEN_MODEL_TYPE: &str = "qwen2_5_vl";

/// The family `cfg` names, reading `model_type` from config.json for "auto".
pub fn resolve_kind(cfg: &ModelConfig) -> Result<ModelKind> {
    if cfg.kind == ModelKind::Bigram {
        return Ok(cfg.kind);
    }
    if cfg.path.is_empty() {
        bail!("model.path is empty: it must name a model dir (config.json, tokenizer, weights)");
    }
    if cfg.kind != ModelKind::Auto {
        return Ok(cfg.kind);
    }
    let path = Path::new(&cfg.path).join("config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("model.path: reading {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("model.path: {} is not JSON", path.display()))?;
    match json.get("model_type").and_then(|v| v.as_str()) {
        Some(QWEN_MODEL_TYPE) => Ok(ModelKind::Qwen2_5Vl),
        Some(BIGRAM_MODEL_TYPE) => Ok(ModelKind::Bigram),
        other => bail!(
            "model.path: {} has model_type {other:?}; this build knows {QWEN_MODEL_TYPE:?} and {BIGRAM_MODEL_TYPE:?} (or set model.kind)",
            path.display()
        ),
    }
}

/// Builds the policy `cfg` describes, its weights loaded or drawn from
/// `seed` as `init` says, and hands it to `visitor`.
pub fn with_policy<V: PolicyVisitor>(
    cfg: &ModelConfig,
    init: PolicyInit,
    seed: u64,
    visitor: V,
) -> Result<V::Output> {
    let path = Path::new(&cfg.path);
    let at = || format!("model.path = {:?}", cfg.path);
    match resolve_kind(cfg)? {
        ModelKind::Bigram => {
            let policy = if init == PolicyInit::Random || cfg.path.is_empty() {
                BigramPolicy::new(seed, BIGRAM_IM_END_BIAS)
            } else {
                BigramPolicy::load(path).with_context(at)?
            };
            visitor.visit(policy)
        }
        ModelKind::Qwen2_5Vl | ModelKind::Auto => {
            let opts = policy_options(cfg)?;
            let policy = match init {
                PolicyInit::Load => QwenVlPolicy::load(path, &opts),
                PolicyInit::Random => QwenVlPolicy::init_random(path, seed, &opts),
            }
            .with_context(at)?;
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
    use tch::Tensor;

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
        assert_eq!(
            with_policy(&cfg, PolicyInit::Load, 1, Names).unwrap(),
            vec!["bigram.weight"]
        );
        cfg.path = "/nonexistent/bigram".into();
        let err = format!(
            "{:#}",
            with_policy(&cfg, PolicyInit::Load, 1, Names).unwrap_err()
        );
        assert!(
            err.contains("model.path") && err.contains("/nonexistent/bigram"),
            "{err}"
        );
        cfg.kind = ModelKind::Qwen2_5Vl;
        let err = format!(
            "{:#}",
            with_policy(&cfg, PolicyInit::Load, 1, Names).unwrap_err()
        );
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

    #[test]
    fn auto_reads_model_type_and_names_an_unknown_one() {
        let tmp = tempfile::tempdir().unwrap();
        let trained = BigramPolicy::new(3, 1.0);
        trained.export(tmp.path()).unwrap();
        let cfg = ModelConfig {
            path: tmp.path().display().to_string(),
            ..Default::default()
        };
        assert_eq!(resolve_kind(&cfg).unwrap(), ModelKind::Bigram);
        struct Weight;
        impl PolicyVisitor for Weight {
            type Output = Tensor;
            fn visit<P: TrainablePolicy>(self, p: P) -> Result<Tensor> {
                Ok(p.trainable_parameters()[0].1.detach())
            }
        }
        let loaded = with_policy(&cfg, PolicyInit::Load, 9, Weight).unwrap();
        assert!(loaded.allclose(&trained.trainable_parameters()[0].1, 0.0, 0.0, false));
        let fresh = with_policy(&cfg, PolicyInit::Random, 9, Weight).unwrap();
        assert!(
            !fresh.allclose(&loaded, 0.0, 0.0, false),
            "random ignores the weights"
        );
        std::fs::write(
            tmp.path().join("config.json"),
            "{\"model_type\": \"llama\"}",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            with_policy(&cfg, PolicyInit::Load, 0, Weight).unwrap_err()
        );
        assert!(
            err.contains("\"llama\"") && err.contains("config.json"),
            "{err}"
        );
    }
}
