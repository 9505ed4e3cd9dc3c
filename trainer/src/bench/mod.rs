//! Model-side benchmarks behind `mmsr-host bench KIND`; each measures its
//! baseline side by side in the same run.

pub mod generate;
pub mod rollout;

use crate::demo::world::WorldConfig;
use crate::demo::{DemoDataConfig, Layout};
use crate::model::{PolicyOptions, QwenVlPolicy};
use crate::train::{ModelConfig, device, dtype};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

/// Where a model-side bench runs; the same strings as `model.device` and
/// `model.dtype` in a training config.
#[derive(Clone, Debug)]
pub struct BenchTarget {
    pub device: String,
    pub dtype: String,
}

impl Default for BenchTarget {
    fn default() -> Self {
        Self {
            device: "cpu".into(),
            dtype: "f32".into(),
        }
    }
}

impl BenchTarget {
    pub fn resolve(&self) -> Result<(Device, Kind)> {
        let cfg = ModelConfig {
            device: self.device.clone(),
            dtype: self.dtype.clone(),
            ..ModelConfig::default()
        };
        Ok((device(&cfg)?, dtype(&cfg)?))
    }

    pub fn options(&self) -> Result<PolicyOptions> {
        let (device, dtype) = self.resolve()?;
        Ok(PolicyOptions {
            device,
            dtype,
            ..PolicyOptions::default()
        })
    }

    /// What the Python baselines pass to `torch`.
    pub fn torch_names(&self) -> Result<(String, &'static str)> {
        let (device, kind) = self.resolve()?;
        let device = match device {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".into(),
        };
        Ok((device, crate::model::policy::dtype_name(kind)))
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.dtype, self.device)
    }
}

/// Waits for queued kernels, so wall-clock timers measure the work.
pub fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The Python that has torch and transformers (`MMSR_PYTHON`, else the
/// project's venv).
pub fn python() -> PathBuf {
    std::env::var_os("MMSR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"))
}

/// The repo root, for the baseline scripts under `tests/python`
/// (`MMSR_REPO` when the binary runs from a copy of the tree elsewhere).
pub fn repo() -> PathBuf {
    std::env::var_os("MMSR_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// The demo's tiny Qwen2.5-VL (hidden 128, 4 layers, vocab 2048), random
/// from seed 0, saved under `dir/weights` so both sides load the same
/// weights.
pub fn tiny_qwen(dir: &Path, target: &BenchTarget) -> Result<(QwenVlPolicy, PathBuf)> {
    let cfg = DemoDataConfig {
        world: WorldConfig {
            known: 6,
            unknown_train: 12,
            unknown_test: 6,
            decoys: 6,
            ..WorldConfig::default()
        },
        vocab_size: 2048,
        ..DemoDataConfig::default()
    };
    crate::demo::generate(dir, &cfg, &[]).context("writing the tiny model's files")?;
    let model_dir = Layout::new(dir).model();
    let random = QwenVlPolicy::init_random(&model_dir, 0, &PolicyOptions::default())?;
    let weights = dir.join("weights");
    random.save_pretrained(&weights)?;
    drop(random);
    let policy = QwenVlPolicy::load(&weights, &target.options()?)
        .with_context(|| format!("loading the tiny model on {}", target.describe()))?;
    Ok((policy, weights))
}
