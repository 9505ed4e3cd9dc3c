//! `mmsr-host bench KIND [--json]`: each kind runs its baseline side by side
//! and prints ratios. The measuring code lives in `crate::bench` (host-side
//! kinds) and `mmsr_trainer::bench` (model-side kinds).
use clap::{Args, ValueEnum};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BenchArgs {
    pub kind: BenchKind,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where `generate` and `rollout` run the model (and their PyTorch
    /// baselines): "cpu", "cuda", "cuda:N" or "auto".
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// The model's dtype for `generate` and `rollout`: "f32", "bf16" or "f16".
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// `rollout` only: prompts in the batch (default: the bench's own).
    #[arg(long)]
    pub prompts: Option<usize>,
    /// `rollout` only: rollouts per prompt.
    #[arg(long)]
    pub n: Option<usize>,
    /// `rollout` only: tokens per generated turn (a random model never stops early).
    #[arg(long)]
    pub max_turn_tokens: Option<usize>,
    /// `rollout` only: the chance each token ends a turn in the varied
    /// on-demand batch (0: skip that batch).
    #[arg(long)]
    pub stop_chance: Option<f64>,
    /// `rollout` only: sessions per generation call.
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// `rollout` only: how long async waits for sibling search results, ms
    /// (`rollout.batch_linger_ms`; 0: never).
    #[arg(long)]
    pub batch_linger_ms: Option<u64>,
    /// `rollout` only: how many decode steps continuous batching's joiners
    /// wait for others (`rollout.join_linger_steps`; 0: never).
    #[arg(long)]
    pub join_linger_steps: Option<u64>,
    /// `rollout` only: the cost of one decode step in the scheduler-only
    /// runs (a scripted policy), ms (0: skip them).
    #[arg(long)]
    pub sched_step_ms: Option<f64>,
    /// `rollout` only: the scheduler-only runs again with each search's
    /// latency drawn from the latency × [1 − this, 1 + this] (0: skip).
    #[arg(long)]
    pub sched_tool_jitter: Option<f64>,
    /// `rollout` only: the fake tools' latency, ms.
    #[arg(long)]
    pub tool_latency_ms: Option<u64>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BenchKind {
    Tools,
    Pipeline,
    Generate,
    Rollout,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let target = mmsr_trainer::bench::BenchTarget {
        device: args.device,
        dtype: args.dtype,
    };
    if matches!(args.kind, BenchKind::Tools | BenchKind::Pipeline) {
        anyhow::ensure!(
            target.device == "cpu" && target.dtype == "f32",
            "--device and --dtype apply to `bench generate` and `bench rollout` only"
        );
    }
    target.resolve()?;
    match args.kind {
        BenchKind::Tools => emit(
            &super::runtime()?.block_on(crate::bench::tools::run())?,
            json,
            crate::bench::tools::print_table,
        ),
        BenchKind::Pipeline => emit(
            &super::runtime()?.block_on(crate::bench::pipeline::run())?,
            json,
            crate::bench::pipeline::print_table,
        ),
        BenchKind::Generate => emit(
            &mmsr_trainer::bench::generate::run(&target)?,
            json,
            mmsr_trainer::bench::generate::print_table,
        ),
        BenchKind::Rollout => {
            let rt = super::runtime()?;
            let mut opts = mmsr_trainer::bench::rollout::RolloutBenchOptions {
                target,
                ..Default::default()
            };
            opts.prompts = args.prompts.unwrap_or(opts.prompts);
            opts.n = args.n.unwrap_or(opts.n);
            opts.max_turn_tokens = args.max_turn_tokens.unwrap_or(opts.max_turn_tokens);
            opts.stop_chance = args.stop_chance.unwrap_or(opts.stop_chance);
            opts.max_batch = args.max_batch.unwrap_or(opts.max_batch);
            opts.batch_linger_ms = args.batch_linger_ms.unwrap_or(opts.batch_linger_ms);
            opts.join_linger_steps = args.join_linger_steps.unwrap_or(opts.join_linger_steps);
            if let Some(ms) = args.sched_step_ms {
                anyhow::ensure!(
                    ms.is_finite() && ms >= 0.0,
                    "--sched-step-ms {ms} is not a duration"
                );
                opts.sched_step = std::time::Duration::from_secs_f64(ms / 1e3);
            }
            if let Some(j) = args.sched_tool_jitter {
                anyhow::ensure!(
                    (0.0..=1.0).contains(&j),
                    "--sched-tool-jitter {j} is not in [0, 1]"
                );
                opts.sched_tool_jitter = j;
            }
            if let Some(ms) = args.tool_latency_ms {
                opts.tool_latency = std::time::Duration::from_millis(ms);
            }
            emit(
                &mmsr_trainer::bench::rollout::run(&opts, rt.handle())?,
                json,
                mmsr_trainer::bench::rollout::print_table,
            )
        }
    }
}

/// One JSON object on stdout with `--json`, else the human table.
fn emit<R: serde::Serialize>(report: &R, json: bool, table: fn(&R)) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        table(report);
    }
    Ok(ExitCode::SUCCESS)
}
