//! One GRPO update step here against the PyTorch twin
//! (`tests/python/grpo_step.py`), from the same weights on the same batch.

use super::RolloutBenchOptions;
use super::forced::{ForcedActions, Workload};
use super::inputs::{fake_tools, requests, rollout_cfg};
use crate::algo::{AdamW, group_advantages};
use crate::bench::sync;
use crate::policy::{TrainablePolicy, Transcript};
use crate::rollout::{Prompts, RolloutEngine, RolloutMode};
use crate::train::{AlgoConfig, UpdateSettings, grpo_update};
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use tokio::runtime::Handle;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn algo(o: &RolloutBenchOptions) -> AlgoConfig {
    AlgoConfig {
        kl_coef: 0.001,
        ppo_epochs: o.ppo_epochs,
        mini_batch: o.mini_batch,
        micro_batch: o.micro_batch,
        ..AlgoConfig::default()
    }
}

const GRAD_CLIP: f64 = 1.0;

/// Step times of one side: best and median, in ms.
#[derive(Clone, Copy, Debug)]
pub struct StepTimes {
    pub best_ms: f64,
    pub median_ms: f64,
}

impl StepTimes {
    fn of(times: Vec<f64>) -> Self {
        Self {
            best_ms: times.iter().copied().fold(f64::INFINITY, f64::min),
            median_ms: median(times),
        }
    }
}

/// Timed rounds per side (each `grpo_repeats` steps).
const GRPO_ROUNDS: usize = 2;

/// Runs the PyTorch twin once on `dir`; its timed step times (ms).
fn run_twin(o: &RolloutBenchOptions, dir: &Path) -> Result<Vec<f64>> {
    let out = Command::new(&o.python)
        .arg(&o.script)
        .arg(dir)
        .output()
        .with_context(|| format!("running {} {}", o.python.display(), o.script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            o.script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("result.json"))?)?;
    result["step_ms"]
        .as_array()
        .context("result.json has no step_ms")?
        .iter()
        .map(|v| {
            v.as_f64()
                .context("result.json: step_ms holds a non-number")
        })
        .collect()
}

pub struct GrpoComparison {
    pub ours: StepTimes,
    pub torch: StepTimes,
    /// Largest |Δ| between the weights after one step on each side.
    pub max_weight_diff: f64,
    /// ‖ours − theirs‖ / ‖theirs − start‖ after one step: robust to Adam's
    /// first step, which moves every weight by ±lr whatever the size of its
    /// gradient, so a gradient near 0 can flip sign between kernels.
    pub update_rel_diff: f64,
    pub response_tokens: usize,
}

/// The GRPO step here and in PyTorch, from the same weights on the same
/// batch.
pub fn grpo_vs_torch<P: TrainablePolicy>(
    policy: P,
    o: &RolloutBenchOptions,
    handle: &Handle,
) -> Result<GrpoComparison> {
    ensure!(o.grpo_repeats >= 1, "grpo_repeats must be at least 1");
    let dir = tempfile_dir()?;
    policy
        .export(&dir.join("model"))
        .context("exporting the bench policy")?;
    // A realistic batch: real multi-turn transcripts from the policy itself.
    let prompts = o.grpo_trajectories.div_ceil(4);
    let engine = RolloutEngine::new(
        rollout_cfg(
            &RolloutBenchOptions {
                prompts,
                n: 4,
                ..o.clone()
            },
            RolloutMode::Sync,
        ),
        Arc::new(Prompts::builtin()),
        fake_tools(Duration::ZERO),
        handle.clone(),
    );
    let mut forced = ForcedActions::new(policy, Workload::OnDemand);
    let (trajs, _) = engine.run(&mut forced, &requests(prompts, 4), 2)?;
    let mut policy = forced.into_inner();
    let batch: Vec<&Transcript> = trajs
        .iter()
        .take(o.grpo_trajectories)
        .map(|t| &t.transcript)
        .collect();
    let rewards: Vec<f64> = (0..batch.len())
        .map(|i| ((i * 7) % 5) as f64 / 4.0)
        .collect();
    let advantages = group_advantages(&rewards, 4.min(batch.len()).max(1), true, 1e-6);
    let trainable: Vec<String> = policy
        .trainable_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    write_batch(&dir, &batch, &advantages, &trainable, o)?;

    let algo = algo(o);
    let settings = UpdateSettings {
        algo: &algo,
        temperature: 1.0,
        grad_clip: GRAD_CLIP,
        lr: o.lr,
        response_budget: 0,
    };
    let named = policy.trainable_parameters();
    let before: Vec<Tensor> = named.iter().map(|(_, t)| cpu_f32(t)).collect();
    let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
    let mut optim = AdamW::new(named, crate::algo::AdamWConfig::default());
    let step = |policy: &mut P, optim: &mut AdamW| {
        grpo_update(policy, optim, &params, &batch, &advantages, &settings)
    };
    // Untimed first step: its result is what the two sides compare.
    step(&mut policy, &mut optim)?;
    let after_one: Vec<(String, Tensor)> = policy
        .trainable_parameters()
        .into_iter()
        .map(|(n, t)| (n, cpu_f32(&t)))
        .collect();
    // The sides take turns, so load that comes and goes on the machine
    // falls on both.
    let (mut ours, mut theirs_ms) = (Vec::new(), Vec::new());
    let device = params.first().map_or(Device::Cpu, Tensor::device);
    for _ in 0..GRPO_ROUNDS {
        for _ in 0..o.grpo_repeats {
            sync(device);
            let t0 = Instant::now();
            step(&mut policy, &mut optim)?;
            sync(device);
            ours.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        theirs_ms.extend(run_twin(o, &dir)?);
    }
    let theirs = Tensor::read_safetensors(dir.join("weights.safetensors"))?;
    let (mut max_diff, mut gap2, mut step2) = (0f64, 0f64, 0f64);
    for ((name, ours), w0) in after_one.iter().zip(&before) {
        let (_, t) = theirs
            .iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("PyTorch returned no `{name}`"))?;
        let gap = ours - t.to_kind(Kind::Float);
        max_diff = max_diff.max(gap.abs().max().double_value(&[]));
        gap2 += gap.square().sum(Kind::Double).double_value(&[]);
        step2 += (t.to_kind(Kind::Float) - w0)
            .square()
            .sum(Kind::Double)
            .double_value(&[]);
    }
    let response_tokens = batch.iter().map(|t| t.response_len()).sum();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(GrpoComparison {
        ours: StepTimes::of(ours),
        torch: StepTimes::of(theirs_ms),
        max_weight_diff: max_diff,
        update_rel_diff: gap2.sqrt() / step2.sqrt().max(f64::MIN_POSITIVE),
        response_tokens,
    })
}

fn cpu_f32(t: &Tensor) -> Tensor {
    t.detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .copy()
}

fn tempfile_dir() -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("mmsr-bench-grpo-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The batch as the Python side reads it: padded tokens, lengths, masks,
/// advantages, the encoded images (concatenated, with each one's length
/// and transcript), and the settings of the step.
fn write_batch(
    dir: &Path,
    batch: &[&Transcript],
    adv: &[f64],
    trainable: &[String],
    o: &RolloutBenchOptions,
) -> Result<()> {
    let len = batch.iter().map(|t| t.tokens.len()).max().unwrap_or(1);
    let b = batch.len();
    let mut tokens = vec![0i64; b * len];
    let mut mask = vec![0f32; b * len];
    for (i, t) in batch.iter().enumerate() {
        tokens[i * len..i * len + t.tokens.len()].copy_from_slice(&t.tokens);
        for (j, &m) in t.response_mask.iter().enumerate() {
            mask[i * len + j] = f32::from(m);
        }
    }
    let shape = [b as i64, len as i64];
    let lengths: Vec<i64> = batch.iter().map(|t| t.tokens.len() as i64).collect();
    let adv: Vec<f32> = adv.iter().map(|&a| a as f32).collect();
    let (mut bytes, mut sizes, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for (i, t) in batch.iter().enumerate() {
        for img in &t.images {
            bytes.extend_from_slice(img);
            sizes.push(img.len() as i64);
            rows.push(i as i64);
        }
    }
    let mut tensors = vec![
        ("tokens", Tensor::from_slice(&tokens).view(shape)),
        ("mask", Tensor::from_slice(&mask).view(shape)),
        ("lengths", Tensor::from_slice(&lengths)),
        ("advantages", Tensor::from_slice(&adv)),
    ];
    if !sizes.is_empty() {
        tensors.push(("image_bytes", Tensor::from_slice(&bytes)));
        tensors.push(("image_sizes", Tensor::from_slice(&sizes)));
        tensors.push(("image_rows", Tensor::from_slice(&rows)));
    }
    Tensor::write_safetensors(&tensors, dir.join("batch.safetensors"))?;
    let (device, dtype) = o.target.torch_names()?;
    let a = algo(o);
    let adamw = crate::algo::AdamWConfig::default();
    let settings = serde_json::json!({
        "temperature": 1.0,
        "clip_low": a.clip_low,
        "clip_high": a.clip_high,
        "kl_coef": a.kl_coef,
        "entropy_coef": a.entropy_coef,
        "ppo_epochs": a.ppo_epochs,
        "mini_batch": a.mini_batch,
        "micro_batch": a.micro_batch,
        "lr": o.lr,
        "betas": [adamw.betas.0, adamw.betas.1],
        "eps": adamw.eps,
        "weight_decay": adamw.weight_decay,
        "grad_clip": GRAD_CLIP,
        "repeats": o.grpo_repeats,
        "device": device,
        "dtype": dtype,
        "trainable": trainable,
    });
    std::fs::write(
        dir.join("settings.json"),
        serde_json::to_string_pretty(&settings)?,
    )?;
    Ok(())
}
