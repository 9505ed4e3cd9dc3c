//! The supervised warm start (`mmsr-host sft`), also the paper's SFT
//! baseline (Finding 4: the same data budget, compared with RL in eval).
//!
//! Scripted trajectories (`scripts`) become transcripts through the policy
//! with the real search tools answering the scripted searches
//! (`transcripts`), then the policy is fitted to them (`fit`) and exported.
//!
//! ```text
//! RUN_DIR/metrics.jsonl     one line per step: {"step", "sft": {"loss", "lr", "grad_norm", "tokens", "epoch"}}
//! RUN_DIR/sft_summary.json  the data (counts, dropped, tokens) and the loss at the start and the end
//! RUN_DIR/config.toml       the resolved config
//! RUN_DIR/model/            the trained policy's export (or sft.out)
//! ```

pub mod config;
pub mod fit;
pub mod scripts;
pub mod transcripts;

pub use config::{PolicyInit, SftSection};
pub use fit::{FitOptions, StepMetrics, fit, mean_entropy, mean_nll};
pub use scripts::{DemoScripts, TrajectorySource};
pub use transcripts::{
    BuildOptions, DataStats, SftData, build_transcripts, weight_turn_openings, with_context_mask,
};

use crate::data::{self, DataCursor, Sample};
use crate::eval::command::progress_bar;
use crate::policy::TrainablePolicy;
use crate::rollout::Prompts;
use crate::tools::SearchTools;
use crate::train::config::TrainConfig;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

pub const SUMMARY_FILE: &str = "sft_summary.json";
pub const CONFIG_FILE: &str = "config.toml";

/// What `sft_summary.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct SftSummary {
    pub data: DataStats,
    pub steps: usize,
    pub first_loss: f64,
    pub last_loss: f64,
    pub build_s: f64,
    pub train_s: f64,
    pub model_dir: String,
}

/// The SFT data budget: `data.max_samples` of the train split (all when 0),
/// drawn in `run.seed`'s order when `data.shuffle`, else the first ones.
pub fn budget_samples(base: &TrainConfig) -> Result<Vec<Sample>> {
    let path = Path::new(&base.data.train);
    let samples = data::load(path, &base.data.load_options())?.samples;
    let order = if base.data.shuffle {
        DataCursor::new(base.run.seed, true).next_batch(samples.len(), samples.len())
    } else {
        (0..samples.len()).collect()
    };
    let keep = match base.data.max_samples {
        0 => samples.len(),
        n => n.min(samples.len()),
    };
    let mut slots: Vec<Option<Sample>> = samples.into_iter().map(Some).collect();
    Ok(order[..keep]
        .iter()
        .map(|&i| slots[i].take().expect("a permutation"))
        .collect())
}

/// Runs the whole warm start into `run.dir`; `handle` must belong to a
/// multi-threaded runtime and this must not be called from its workers.
pub fn run_sft<P: TrainablePolicy, T: SearchTools + 'static>(
    base: &TrainConfig,
    sft: &SftSection,
    policy: &mut P,
    source: &dyn TrajectorySource,
    tools: Arc<T>,
    handle: &Handle,
) -> Result<SftSummary> {
    let run_dir = PathBuf::from(&base.run.dir);
    // An earlier run's model and metrics are not replaced silently.
    for done in [crate::report::METRICS_FILE, SUMMARY_FILE] {
        anyhow::ensure!(
            !run_dir.join(done).exists(),
            "run dir {} already holds an SFT run ({done}): set another run.dir, or remove it",
            run_dir.display()
        );
    }
    crate::train::ensure_empty_out(&sft.out_dir(base))?;
    // The fit is kept only by its export, at the end.
    crate::train::disk::ensure_room(
        &sft.out_dir(base),
        policy.export_bytes(),
        "the SFT model's export",
    )?;
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("creating run dir {}", run_dir.display()))?;
    let resolved = format!(
        "{}\n[sft]\n{}",
        base.to_toml()?,
        toml::to_string_pretty(sft)?
    );
    std::fs::write(run_dir.join(CONFIG_FILE), resolved)?;

    let mut samples = budget_samples(base)?;
    for path in &sft.extra_train {
        let extra = data::load(Path::new(path), &base.data.load_options())
            .with_context(|| format!("sft.extra_train: {path:?}"))?;
        samples.extend(extra.samples);
    }
    let prompts =
        Arc::new(Prompts::load(&base.rollout.prompts_dir).context("rollout.prompts_dir")?);
    let started = Instant::now();
    let progress = progress_bar(base.run.progress, samples.len(), "sft data (questions)");
    let build = BuildOptions {
        max_rounds: base.rollout.max_rounds,
        search_concurrency: sft.search_concurrency,
        tool_timeout: Duration::from_secs(sft.tool_timeout_s),
        chunk: 64,
        drop_failed_searches: sft.drop_failed_searches,
        drop_ungrounded: sft.drop_ungrounded,
        direct_prompt: false,
    };
    let built = build_transcripts(
        policy,
        &samples,
        source,
        &prompts,
        &tools,
        handle,
        &build,
        &|n| progress.set_position(n as u64),
    )?;
    progress.finish_and_clear();
    // The same direct answers under the direct workflow's prompt.
    let direct_prompted = if sft.direct_prompt_repeat > 0 {
        let direct: Vec<Sample> = built
            .sample_index
            .iter()
            .zip(&built.direct)
            .filter(|(_, d)| **d)
            .map(|(&i, _)| samples[i].clone())
            .collect();
        let opts = BuildOptions {
            direct_prompt: true,
            ..build
        };
        build_transcripts(
            policy,
            &direct,
            source,
            &prompts,
            &tools,
            handle,
            &opts,
            &|_| {},
        )
        .context("the direct-prompt copies")?
        .transcripts
    } else {
        Vec::new()
    };
    let build_s = started.elapsed().as_secs_f64();
    tracing::info!(stats = ?built.stats, "sft data built in {build_s:.1}s");
    let mut train_set = built.transcripts.clone();
    for (t, &direct) in built.transcripts.iter().zip(&built.direct) {
        if direct {
            train_set.extend(std::iter::repeat_n(t, sft.direct_repeat - 1).cloned());
        }
    }
    for t in &direct_prompted {
        train_set.extend(std::iter::repeat_n(t, sft.direct_prompt_repeat).cloned());
    }
    if sft.context_loss || sft.turn_open_weight > 1 {
        let skip = policy.vision_placeholders();
        train_set = train_set
            .iter()
            .map(|t| {
                let mut out = if sft.context_loss {
                    with_context_mask(t, &skip)
                } else {
                    t.clone()
                };
                weight_turn_openings(
                    &mut out.response_mask,
                    &t.response_mask,
                    sft.turn_open_weight,
                );
                out
            })
            .collect();
    }

    let a = &base.actor;
    let opts = FitOptions {
        total_steps: base.run.total_steps,
        epochs: base.run.epochs,
        batch_size: sft.batch_size,
        micro_batch: sft.micro_batch,
        seed: base.run.seed,
        shuffle: true,
        lr: a.lr,
        warmup_steps: a.warmup_steps,
        decay: a.decay,
        min_lr_ratio: a.min_lr_ratio,
        adamw: a.adamw(),
        grad_clip: a.grad_clip,
        confidence_penalty: sft.confidence_penalty,
        data_parallel: sft.data_parallel,
    };
    let started = Instant::now();
    let progress = progress_bar(base.run.progress, opts.steps(train_set.len()), "sft steps");
    let history = fit(
        policy,
        &train_set,
        &opts,
        Some(&run_dir.join(crate::report::METRICS_FILE)),
        &mut |step, m| {
            progress.set_position(step as u64 + 1);
            progress.set_message(format!("sft loss {:.3}", m.loss));
        },
    )?;
    progress.finish_and_clear();
    let train_s = started.elapsed().as_secs_f64();

    let out = sft.out_dir(base);
    policy
        .export(&out)
        .with_context(|| format!("exporting the trained model to {}", out.display()))?;
    let summary = SftSummary {
        data: built.stats,
        steps: history.len(),
        first_loss: history.first().map_or(f64::NAN, |m| m.loss),
        last_loss: history.last().map_or(f64::NAN, |m| m.loss),
        build_s,
        train_s,
        model_dir: out.display().to_string(),
    };
    std::fs::write(
        run_dir.join(SUMMARY_FILE),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests;
