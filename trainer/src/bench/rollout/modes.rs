//! One workload in sync, async and continuous mode, on the tiny model.

use super::RolloutBenchOptions;
use super::forced::{ForcedActions, Workload};
use super::inputs::{fake_tools, requests, rollout_cfg};
use crate::model::QwenVlPolicy;
use crate::policy::Policy;
use crate::rollout::{Prompts, RolloutConfig, RolloutEngine, RolloutMode, RolloutStats};
use anyhow::{Context, Result, ensure};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

#[derive(Clone, Debug, Serialize)]
pub struct ModeRun {
    pub wall_ms: f64,
    pub generate_ms: f64,
    pub tool_wait_ms: f64,
    pub generate_calls: usize,
    pub overlapped_calls: usize,
    pub tool_calls: usize,
    pub generated_tokens: usize,
}

impl ModeRun {
    pub(super) fn new(s: &RolloutStats, tokens: usize) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Self {
            wall_ms: ms(s.wall),
            generate_ms: ms(s.generate),
            tool_wait_ms: ms(s.tool_wait),
            generate_calls: s.generate_calls,
            overlapped_calls: s.overlapped_calls,
            tool_calls: s.tool_calls,
            generated_tokens: tokens,
        }
    }
}

/// One workload in both modes: the best run of each.
#[derive(Clone, Debug, Serialize)]
pub struct ModeComparison {
    pub workload: Workload,
    pub async_run: ModeRun,
    pub sync_run: ModeRun,
    /// Async with `continuous_batching`.
    pub continuous_run: ModeRun,
    /// sync / async wall time.
    pub async_speedup: f64,
    /// sync / continuous wall time.
    pub continuous_speedup: f64,
    /// The most any scheduling could gain here, from the sync run: sync
    /// time over max(all generation, first-round generation + two
    /// searches), generation being serial on the model thread.
    pub async_bound: f64,
}

/// One rollout batch of `workload` in each mode, each on a fresh copy of
/// the policy, `rollout_repeats` times alternating; the best of each.
pub fn rollout_modes<P: Policy>(
    make: &dyn Fn() -> Result<P>,
    o: &RolloutBenchOptions,
    workload: Workload,
    handle: &Handle,
) -> Result<ModeComparison> {
    ensure!(o.rollout_repeats >= 1, "rollout_repeats must be at least 1");
    let reqs = requests(o.prompts, o.n);
    let run = |mode, continuous| -> Result<ModeRun> {
        let engine = RolloutEngine::new(
            RolloutConfig {
                continuous_batching: continuous,
                ..rollout_cfg(o, mode)
            },
            Arc::new(Prompts::builtin()),
            fake_tools(o.tool_latency),
            handle.clone(),
        );
        let mut policy = ForcedActions::new(make()?, workload);
        let (trajs, stats) = engine.run(&mut policy, &reqs, 1)?;
        Ok(ModeRun::new(
            &stats,
            trajs.iter().map(|t| t.response_tokens()).sum(),
        ))
    };
    let (mut fast, mut slow, mut cont) = (None, None, None);
    for _ in 0..o.rollout_repeats {
        fast = best(fast, run(RolloutMode::Async, false)?);
        slow = best(slow, run(RolloutMode::Sync, false)?);
        cont = best(cont, run(RolloutMode::Async, true)?);
    }
    let (async_run, sync_run, continuous_run) = (
        fast.expect("≥ 1 run"),
        slow.expect("≥ 1 run"),
        cont.expect("≥ 1 run"),
    );
    let trajectories = reqs.len() as f64;
    let turns = trajectories + sync_run.tool_calls as f64;
    let first_round = sync_run.generate_ms * trajectories / turns;
    let chain = 2.0 * o.tool_latency.as_secs_f64() * 1e3;
    Ok(ModeComparison {
        workload,
        async_speedup: sync_run.wall_ms / async_run.wall_ms,
        continuous_speedup: sync_run.wall_ms / continuous_run.wall_ms,
        async_bound: sync_run.wall_ms / sync_run.generate_ms.max(first_round + chain),
        async_run,
        sync_run,
        continuous_run,
    })
}

/// The faster of the best run so far and a new one (other load on the
/// machine only ever adds time).
pub(super) fn best(so_far: Option<ModeRun>, run: ModeRun) -> Option<ModeRun> {
    match so_far {
        Some(a) if a.wall_ms <= run.wall_ms => Some(a),
        _ => Some(run),
    }
}

/// Copies the model dir `from` to `to`, listing about `chance` × vocab
/// plain-text ids as end-of-turn in its generation_config.json: the random
/// model's next token is near uniform, so each one ends the turn with about
/// that chance.
pub(super) fn with_stop_chance(
    from: &Path,
    to: &Path,
    chance: f64,
    policy: &QwenVlPolicy,
) -> Result<()> {
    ensure!(
        (0.0..=1.0).contains(&chance),
        "stop chance {chance} is not in [0, 1]"
    );
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        std::fs::copy(&path, to.join(path.file_name().context("a file")?))
            .with_context(|| format!("copying {}", path.display()))?;
    }
    let vocab = policy.model().cfg.text.vocab_size as f64;
    // The byte-level vocabulary comes first; the added tokens follow it.
    let plain = policy
        .tokenizer()
        .token_id("<|endoftext|>")
        .context("the tiny tokenizer has no <|endoftext|>")?;
    let k = ((chance * vocab).round() as i64).clamp(0, plain);
    let mut eos = vec![policy.tokenizer().im_end];
    eos.extend((0..k).map(|i| i * plain / k.max(1)));
    let path = to.join("generation_config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    config["eos_token_id"] = serde_json::json!(eos);
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}
