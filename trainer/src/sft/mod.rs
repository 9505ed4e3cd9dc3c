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
//! RUN_DIR/sft_data.safetensors  the train set as built (what `--resume` fits on)
//! RUN_DIR/checkpoints/      every `run.save_every` steps, the trainer's format
//! RUN_DIR/model/            the trained policy's export (or sft.out)
//! ```

pub mod config;
pub mod data_file;
pub mod fit;
pub mod scripts;
pub mod transcripts;

pub use config::{PolicyInit, SftSection};
pub use fit::{FitCheckpoints, FitOptions, StepMetrics, fit, mean_entropy, mean_nll};
pub use scripts::{DemoScripts, TrajectorySource};
pub use transcripts::{
    BuildOptions, DataStats, SftData, build_transcripts, weight_turn_openings, with_context_mask,
};

use crate::data::{self, DataCursor, Sample};
use crate::eval::command::progress_bar;
use crate::policy::TrainablePolicy;
use crate::rollout::Prompts;
use crate::tools::SearchTools;
use crate::train::checkpoint;
use crate::train::config::TrainConfig;
use crate::train::{CHECKPOINTS_DIR, RunControl, StopRequest, disk};
use anyhow::{Context, Result, bail};
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
    /// The checkpoint's step a resumed run went on from (its `train_s`
    /// counts only the steps after it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<usize>,
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

/// Keys a resume may change: where the model goes, and what only the
/// build (skipped on resume) uses.
const RESUME_FREE_KEYS: [&str; 3] = ["sft.out", "sft.search_concurrency", "sft.tool_timeout_s"];

/// Runs the whole warm start into `run.dir`; `handle` must belong to a
/// multi-threaded runtime and this must not be called from its workers.
/// With `control.resume`, an unfinished run in `run.dir` continues from its
/// train set and its latest checkpoint, under the same config; a stop
/// requested through `control.stop` ends it between steps, checkpointed.
pub fn run_sft<P: TrainablePolicy, T: SearchTools + 'static>(
    base: &TrainConfig,
    sft: &SftSection,
    policy: &mut P,
    source: &dyn TrajectorySource,
    tools: Arc<T>,
    handle: &Handle,
    control: RunControl,
) -> Result<SftSummary> {
    let RunControl { resume, stop } = control;
    let run_dir = PathBuf::from(&base.run.dir);
    let data_path = run_dir.join(data_file::DATA_FILE);
    let metrics_path = run_dir.join(crate::report::METRICS_FILE);
    let ck_root = run_dir.join(CHECKPOINTS_DIR);
    // An earlier run's model and metrics are not replaced silently.
    anyhow::ensure!(
        !run_dir.join(SUMMARY_FILE).exists(),
        "run dir {} already holds a finished SFT run ({SUMMARY_FILE}): set another run.dir, or remove it",
        run_dir.display()
    );
    let begun = [&data_path, &metrics_path, &ck_root]
        .into_iter()
        .find(|p| p.exists());
    let resolved = format!(
        "{}\n[sft]\n{}",
        base.to_toml()?,
        toml::to_string_pretty(sft)?
    );
    match (begun, resume) {
        (Some(found), false) => bail!(
            "run dir {} already holds an unfinished SFT run ({}): pass --resume to continue it, or set another run.dir",
            run_dir.display(),
            found.display()
        ),
        (Some(_), true) => check_resumable(&run_dir, &resolved)?,
        (None, true) => {
            tracing::warn!(dir = %run_dir.display(), "--resume: nothing to resume; starting afresh")
        }
        (None, false) => {}
    }
    crate::train::ensure_empty_out(&sft.out_dir(base))?;
    // The fit is kept by its checkpoints and its export.
    let checkpoint_bytes = if base.run.save_every > 0 {
        policy.checkpoint_bytes()
    } else {
        0
    };
    disk::ensure_room(
        &sft.out_dir(base),
        policy.export_bytes() + checkpoint_bytes,
        if checkpoint_bytes > 0 {
            "the SFT model's export plus a checkpoint"
        } else {
            "the SFT model's export"
        },
    )?;
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("creating run dir {}", run_dir.display()))?;
    std::fs::write(run_dir.join(CONFIG_FILE), &resolved)?;

    let (train_set, stats, build_s, fingerprint) = if resume && data_path.exists() {
        let (saved, fingerprint) = data_file::read(&data_path)?;
        tracing::info!(file = %data_path.display(), transcripts = saved.transcripts.len(), "resuming on the saved SFT data");
        (saved.transcripts, saved.stats, saved.build_s, fingerprint)
    } else {
        let started = Instant::now();
        let (train_set, stats) = build_train_set(base, sft, policy, source, tools, handle, &stop)?;
        let saved = data_file::SavedData {
            transcripts: train_set,
            stats,
            build_s: started.elapsed().as_secs_f64(),
        };
        let fingerprint = data_file::write(&data_path, &saved)?;
        (saved.transcripts, saved.stats, saved.build_s, fingerprint)
    };
    let resume_from = if resume {
        checkpoint::latest(&ck_root)?
            .map(|dir| checkpoint::load(&dir))
            .transpose()?
    } else {
        None
    };

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
    let resumed_at = resume_from.as_ref().map(|c| c.state.step);
    let checkpoints = FitCheckpoints {
        root: ck_root,
        every: base.run.save_every,
        keep: base.run.keep_checkpoints,
        config: base,
        data: fingerprint,
        resume: resume_from,
        stop,
    };
    fit(
        policy,
        &train_set,
        &opts,
        Some(&metrics_path),
        Some(checkpoints),
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
    // The whole run's losses, a resumed one's earlier steps included.
    let losses: Vec<f64> = crate::report::metrics_log::read(&metrics_path)?
        .iter()
        .filter_map(|r| r.values.get("sft/loss").copied())
        .collect();
    let summary = SftSummary {
        data: stats,
        steps: losses.len(),
        resumed_at,
        first_loss: losses.first().copied().unwrap_or(f64::NAN),
        last_loss: losses.last().copied().unwrap_or(f64::NAN),
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

/// Refuses to resume a run dir whose run computed something else: its
/// `config.toml` (written at its start) against `resolved`, key by key.
fn check_resumable(run_dir: &Path, resolved: &str) -> Result<()> {
    let path = run_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("--resume: reading the run's config {}", path.display()))?;
    let saved: toml::Value = toml::from_str(&text)
        .with_context(|| format!("--resume: the run's config {} is corrupt", path.display()))?;
    let now: toml::Value = toml::from_str(resolved)?;
    checkpoint::check_compatible_values(&saved, &now, &RESUME_FREE_KEYS)
        .with_context(|| format!("--resume: run dir {}", run_dir.display()))
}

/// The train set: the budget's scripted trajectories through the policy
/// and the tools, with the repeats and loss masks of `[sft]`.
fn build_train_set<P: TrainablePolicy, T: SearchTools + 'static>(
    base: &TrainConfig,
    sft: &SftSection,
    policy: &mut P,
    source: &dyn TrajectorySource,
    tools: Arc<T>,
    handle: &Handle,
    stop: &StopRequest,
) -> Result<(Vec<crate::policy::Transcript>, DataStats)> {
    let mut samples = budget_samples(base)?;
    for path in &sft.extra_train {
        let extra = data::load(Path::new(path), &base.data.load_options())
            .with_context(|| format!("sft.extra_train: {path:?}"))?;
        samples.extend(extra.samples);
    }
    let prompts =
        Arc::new(Prompts::load(&base.rollout.prompts_dir).context("rollout.prompts_dir")?);
    let progress = progress_bar(base.run.progress, samples.len(), "sft data (questions)");
    let build = BuildOptions {
        max_rounds: base.rollout.max_rounds,
        search_concurrency: sft.search_concurrency,
        tool_timeout: Duration::from_secs(sft.tool_timeout_s),
        chunk: 64,
        drop_failed_searches: sft.drop_failed_searches,
        drop_ungrounded: sft.drop_ungrounded,
        direct_prompt: false,
        stop: stop.clone(),
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
        // Quick (no search): not worth a stop between them and the fit.
        let opts = BuildOptions {
            direct_prompt: true,
            stop: StopRequest::default(),
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
    tracing::info!(stats = ?built.stats, "sft data built");
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

    Ok((train_set, built.stats))
}

#[cfg(test)]
mod tests;
