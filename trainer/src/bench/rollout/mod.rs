//! `mmsr-host bench rollout`, each half against its baseline in the same run:
//! - one rollout batch in async mode against round-synchronous mode, same
//!   policy and requests, with fake tools of a fixed latency (200 ms). The
//!   policy generates every turn itself (real cost, real batching), but the
//!   action each turn takes is scripted ([`ForcedActions`]), so the batch has
//!   a known search shape whatever the policy has learnt: [`Workload::Rag`]
//!   (every trajectory image-searches, text-searches, then answers: the most
//!   rounds the paper's limits allow) for the headline, and
//!   [`Workload::OnDemand`] (a quarter each of the four valid formats), also
//!   with turns of random length ([`Workload::OnDemandVaried`]). Async
//!   cannot beat (first-round generation + 2 × latency) by much: its gain
//!   is the later rounds' generation hidden behind searches;
//! - the scheduler alone ([`scheduler_runs`]): sync, async, and async with
//!   `early_search_start`, on a scripted policy whose decode steps cost the
//!   same at any batch size;
//! - one GRPO update step (the trainer's own [`grpo_update`]) against an
//!   equivalent PyTorch implementation (`tests/python/grpo_step.py`) on the
//!   same weights and batch; the weights after one step are compared too.
//!
//! Both halves run on the demo's tiny Qwen2.5-VL ([`super::tiny_qwen`]) on
//! the device and dtype asked for. The measuring code is generic over the
//! policy, and the Python side picks its twin from the exported
//! `config.json`'s `model_type` (the bigram test policy has one too).

use super::{BenchTarget, python, repo, tiny_qwen};
use crate::model::QwenVlPolicy;
use crate::rollout::RolloutConfig;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use tokio::runtime::Handle;

mod forced;
mod grpo;
mod inputs;
mod modes;
mod scheduler;
mod table;

pub use forced::{ForcedActions, ForcedSession, Workload};
pub use grpo::{GrpoComparison, StepTimes, grpo_vs_torch};
use modes::with_stop_chance;
pub use modes::{ModeComparison, ModeRun, rollout_modes};
pub use scheduler::{SchedulerRuns, scheduler_runs};
pub use table::print_table;

#[derive(Clone, Debug)]
pub struct RolloutBenchOptions {
    pub prompts: usize,
    pub n: usize,
    pub max_turn_tokens: usize,
    /// For the varied workload: the chance that each generated token ends
    /// the turn (0: that workload is not run). A random model almost never
    /// stops, so the other workloads' turns are all `max_turn_tokens` long
    /// and a call's rows finish together; here they finish apart.
    pub stop_chance: f64,
    /// Sessions per generation call (0: no cap), as GPU memory imposes.
    pub max_batch: usize,
    /// The scheduler-only runs: a scripted policy whose decode steps cost
    /// this each, whatever the batch (zero: not run).
    pub sched_step: Duration,
    /// Their reasons' longest length in tokens (each turn draws 8..=this).
    pub sched_reason_tokens: usize,
    /// A second set of them with each search's latency drawn from
    /// `tool_latency` × [1 − this, 1 + this], as real APIs' vary (0: not
    /// run).
    pub sched_tool_jitter: f64,
    /// Async's wait for sibling search results (`rollout.batch_linger_ms`).
    pub batch_linger_ms: u64,
    /// Continuous batching's wait for other joiners
    /// (`rollout.join_linger_steps`).
    pub join_linger_steps: u64,
    pub tool_latency: Duration,
    /// Runs of each mode, alternating; the best counts (other load on the
    /// machine only ever adds time).
    pub rollout_repeats: usize,
    /// Trajectories in the GRPO batch.
    pub grpo_trajectories: usize,
    pub ppo_epochs: usize,
    /// Trajectories per optimizer step (0: the whole batch, one step).
    pub mini_batch: usize,
    pub micro_batch: usize,
    pub lr: f64,
    /// Timed GRPO steps per round on each side (two rounds, taking turns),
    /// after one untimed step.
    pub grpo_repeats: usize,
    pub target: BenchTarget,
    pub python: PathBuf,
    pub script: PathBuf,
}

impl Default for RolloutBenchOptions {
    fn default() -> Self {
        Self {
            // A random model rarely stops, so every turn is max_turn_tokens
            // long. On a 2-core box the first round (its prefill holds the
            // whole instruction prompt and the image) takes ~0.5 s, later
            // rounds ~0.3 s, against 200 ms searches; async gains most when
            // a round's generation equals the latency (see `async_bound`).
            prompts: 8,
            n: 4,
            max_turn_tokens: 32,
            stop_chance: 1.0 / 16.0,
            max_batch: 8,
            sched_step: Duration::from_millis(3),
            sched_reason_tokens: 96,
            sched_tool_jitter: 0.75,
            batch_linger_ms: RolloutConfig::default().batch_linger_ms,
            join_linger_steps: RolloutConfig::default().join_linger_steps,
            tool_latency: Duration::from_millis(200),
            rollout_repeats: 3,
            grpo_trajectories: 32,
            ppo_epochs: 1,
            mini_batch: 0,
            micro_batch: 8,
            lr: 1e-3,
            grpo_repeats: 10,
            target: BenchTarget::default(),
            python: python(),
            script: repo().join("tests/python/grpo_step.py"),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RolloutBenchReport {
    pub policy: String,
    pub device: String,
    pub dtype: String,
    pub trajectories: usize,
    pub tool_latency_ms: f64,
    pub max_batch: usize,
    pub batch_linger_ms: u64,
    pub join_linger_steps: u64,
    /// The RAG-shaped batch (every trajectory searches twice).
    pub async_ms: f64,
    pub sync_ms: f64,
    /// sync / async wall time.
    pub async_speedup: f64,
    pub rag: ModeComparison,
    pub on_demand: ModeComparison,
    pub stop_chance: f64,
    /// The on-demand batch with turns of random length (`stop_chance`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_demand_varied: Option<ModeComparison>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerRuns>,
    /// The same with tools of varying latency (`sched_tool_jitter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler_varied_tools: Option<SchedulerRuns>,
    pub grpo_trajectories: usize,
    pub grpo_response_tokens: usize,
    /// Best of the timed steps (robust to other load on the machine).
    pub grpo_step_ms: f64,
    pub torch_grpo_step_ms: f64,
    /// Ours over PyTorch's, best against best (below 1: faster).
    pub grpo_step_ratio: f64,
    pub grpo_step_median_ms: f64,
    pub torch_grpo_step_median_ms: f64,
    /// Largest |Δ| between the weights after one step here and in PyTorch.
    pub grpo_max_weight_diff: f64,
    /// ‖Δ ours − Δ PyTorch‖ / ‖Δ PyTorch‖ over that step's updates.
    pub grpo_update_rel_diff: f64,
}

/// Both halves on the tiny Qwen2.5-VL, each mode and the GRPO step from
/// the same weights.
pub fn run(o: &RolloutBenchOptions, handle: &Handle) -> Result<RolloutBenchReport> {
    let dir = tempfile::tempdir()?;
    let (policy, weights) = tiny_qwen(dir.path(), &o.target)?;
    let opts = o.target.options()?;
    let make = || QwenVlPolicy::load(&weights, &opts);
    let rag = rollout_modes(&make, o, Workload::Rag, handle)?;
    let on_demand = rollout_modes(&make, o, Workload::OnDemand, handle)?;
    let on_demand_varied = if o.stop_chance > 0.0 {
        let varied = dir.path().join("weights-varied");
        with_stop_chance(&weights, &varied, o.stop_chance, &policy)?;
        let make = || QwenVlPolicy::load(&varied, &opts);
        Some(rollout_modes(&make, o, Workload::OnDemandVaried, handle)?)
    } else {
        None
    };
    let scheduler = if o.sched_step.is_zero() {
        None
    } else {
        Some(scheduler_runs(o, 0.0, handle)?)
    };
    let scheduler_varied_tools = if o.sched_step.is_zero() || o.sched_tool_jitter == 0.0 {
        None
    } else {
        Some(scheduler_runs(o, o.sched_tool_jitter, handle)?)
    };
    let g = grpo_vs_torch(policy, o, handle)?;
    let (device, dtype) = o.target.torch_names()?;
    Ok(RolloutBenchReport {
        policy: "tiny Qwen2.5-VL (hidden 128, 4 layers, vocab 2048, random)".into(),
        device,
        dtype: dtype.into(),
        trajectories: o.prompts * o.n,
        tool_latency_ms: o.tool_latency.as_secs_f64() * 1e3,
        max_batch: o.max_batch,
        batch_linger_ms: o.batch_linger_ms,
        join_linger_steps: o.join_linger_steps,
        async_ms: rag.async_run.wall_ms,
        sync_ms: rag.sync_run.wall_ms,
        async_speedup: rag.async_speedup,
        rag,
        on_demand,
        stop_chance: o.stop_chance,
        on_demand_varied,
        scheduler,
        scheduler_varied_tools,
        grpo_trajectories: o.grpo_trajectories,
        grpo_response_tokens: g.response_tokens,
        grpo_step_ms: g.ours.best_ms,
        torch_grpo_step_ms: g.torch.best_ms,
        grpo_step_ratio: g.ours.best_ms / g.torch.best_ms,
        grpo_step_median_ms: g.ours.median_ms,
        torch_grpo_step_median_ms: g.torch.median_ms,
        grpo_max_weight_diff: g.max_weight_diff,
        grpo_update_rel_diff: g.update_rel_diff,
    })
}
