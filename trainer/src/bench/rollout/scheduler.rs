//! The scheduler alone: a scripted policy whose decode steps cost the same
//! at any batch size.

use super::RolloutBenchOptions;
use super::forced::{IMAGE, PATTERNS, TEXT};
use super::inputs::{fake_tools_of, png, rollout_cfg};
use super::modes::{ModeRun, best};
use crate::rollout::{Prompts, RolloutConfig, RolloutEngine, RolloutMode, RolloutRequest};
use crate::testkit::{ChatTokens, ScriptedPolicy};
use crate::tools::FakeToolCall;
use anyhow::{Result, ensure};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// The scheduler alone, on the on-demand shapes: a scripted policy whose
/// decode steps each cost the same whatever the batch size (a GPU's shape at
/// these sizes; on two CPU cores a step's cost follows its rows), turns of
/// differing length (as a trained policy's are) and no cap on a call.
#[derive(Clone, Debug, Serialize)]
pub struct SchedulerRuns {
    pub step_ms: f64,
    /// Each search's latency is `tool_latency` × [1 − this, 1 + this].
    pub tool_jitter: f64,
    pub mean_turn_tokens: f64,
    pub sync_run: ModeRun,
    /// Async as configured by default: searches start when their call returns.
    pub async_run: ModeRun,
    /// Async with `early_search_start`: as their rows finish.
    pub async_early: ModeRun,
    /// Async with `continuous_batching`: one decode that sessions join
    /// and leave between steps.
    pub continuous: ModeRun,
    /// sync / continuous.
    pub continuous_speedup: f64,
    /// The longest trajectory's own chain: its turns' tokens × the step
    /// cost plus its searches' latency. No schedule ends the batch sooner.
    pub critical_path_ms: f64,
    /// sync / async.
    pub async_speedup: f64,
    /// async / async with `early_search_start` (above 1: the early start wins).
    pub early_start_speedup: f64,
}

/// A turn of `pattern`'s `turn`-th action with a reason of 8..=`longest`
/// tokens, drawn from the trajectory and turn.
fn scheduled_turn(k: usize, turn: usize, longest: usize) -> String {
    let pattern = PATTERNS[k % PATTERNS.len()];
    let action = pattern[turn.min(pattern.len() - 1)];
    let span = longest.saturating_sub(8) as u64 + 1;
    let len = 8 + (crate::rollout::mix(k as u64, turn as u64) % span) as usize;
    action
        .replace(
            "<reason>r</reason>",
            &format!("<reason>{}</reason>", "r".repeat(len)),
        )
        .replace("landmark", &format!("landmark {k}"))
}

/// Trajectory `k`'s image or text search latency: `base` × a factor drawn
/// from [1 − jitter, 1 + jitter].
fn search_latency(base: Duration, jitter: f64, k: usize, image: bool) -> Duration {
    let u = (crate::rollout::mix(k as u64, 1000 + u64::from(image)) % 1001) as f64 / 1000.0;
    base.mul_f64(1.0 - jitter + 2.0 * jitter * u)
}

pub fn scheduler_runs(
    o: &RolloutBenchOptions,
    jitter: f64,
    handle: &Handle,
) -> Result<SchedulerRuns> {
    ensure!(o.rollout_repeats >= 1, "rollout_repeats must be at least 1");
    ensure!(
        (0.0..=1.0).contains(&jitter),
        "the tools' latency jitter {jitter} is not in [0, 1]"
    );
    let base = o.tool_latency;
    let trajectories = o.prompts * o.n;
    let reqs: Vec<RolloutRequest> = (0..trajectories)
        .map(|k| RolloutRequest {
            id: format!("sched#{k}"),
            question: format!("q{k}"),
            image: png(k as u8),
            // Names the trajectory to the tools, for its latency.
            image_url: Some(format!("sched://{k}")),
        })
        .collect();
    let longest = o.sched_reason_tokens;
    let run = |mode, early, continuous| -> Result<ModeRun> {
        let turn_tokens = longest + 64;
        // No cap on a call: a GPU batches the whole round.
        let cfg = RolloutConfig {
            max_turn_tokens: turn_tokens,
            max_response_tokens: 3 * turn_tokens,
            max_batch: 0,
            early_search_start: early,
            continuous_batching: continuous,
            ..rollout_cfg(o, mode)
        };
        let tools = fake_tools_of(base).with_latency_of(move |call| {
            let (k, image) = match call {
                FakeToolCall::Image { url, .. } => (
                    url.as_deref().and_then(|u| u.strip_prefix("sched://")),
                    true,
                ),
                FakeToolCall::Text(q) => (q.strip_prefix("landmark "), false),
            };
            let k = k.and_then(|k| k.parse().ok()).unwrap_or(0);
            search_latency(base, jitter, k, image)
        });
        let engine = RolloutEngine::new(
            cfg,
            Arc::new(Prompts::builtin()),
            Arc::new(tools),
            handle.clone(),
        );
        let mut policy = ScriptedPolicy::new(move |text: &str| {
            // The first turn ends with the question, `q{k}`.
            let k: usize = text
                .rsplit("Question: q")
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            (0..3).map(|t| scheduled_turn(k, t, longest)).collect()
        })
        .with_cost(o.sched_step);
        let (trajs, stats) = engine.run(&mut policy, &reqs, 1)?;
        Ok(ModeRun::new(
            &stats,
            trajs.iter().map(|t| t.response_tokens()).sum(),
        ))
    };
    let (mut sync_run, mut async_run, mut early, mut cont) = (None, None, None, None);
    for _ in 0..o.rollout_repeats {
        sync_run = best(sync_run, run(RolloutMode::Sync, false, false)?);
        async_run = best(async_run, run(RolloutMode::Async, false, false)?);
        early = best(early, run(RolloutMode::Async, true, false)?);
        cont = best(cont, run(RolloutMode::Async, false, true)?);
    }
    let (sync_run, async_run, async_early, continuous) = (
        sync_run.expect("≥ 1 run"),
        async_run.expect("≥ 1 run"),
        early.expect("≥ 1 run"),
        cont.expect("≥ 1 run"),
    );
    let turns = trajectories + sync_run.tool_calls;
    let critical_path_ms = (0..trajectories)
        .map(|k| {
            let pattern = PATTERNS[k % PATTERNS.len()];
            let tokens: usize = (0..pattern.len())
                .map(|t| ChatTokens::text(&scheduled_turn(k, t, longest)).len() + 1)
                .sum();
            let searches: Duration = pattern
                .iter()
                .map(|&a| match a {
                    IMAGE => search_latency(base, jitter, k, true),
                    TEXT => search_latency(base, jitter, k, false),
                    _ => Duration::ZERO,
                })
                .sum();
            tokens as f64 * o.sched_step.as_secs_f64() * 1e3 + searches.as_secs_f64() * 1e3
        })
        .fold(0.0, f64::max);
    Ok(SchedulerRuns {
        critical_path_ms,
        tool_jitter: jitter,
        step_ms: o.sched_step.as_secs_f64() * 1e3,
        mean_turn_tokens: sync_run.generated_tokens as f64 / turns as f64,
        async_speedup: sync_run.wall_ms / async_run.wall_ms,
        early_start_speedup: async_run.wall_ms / async_early.wall_ms,
        continuous_speedup: sync_run.wall_ms / continuous.wall_ms,
        sync_run,
        async_run,
        async_early,
        continuous,
    })
}
