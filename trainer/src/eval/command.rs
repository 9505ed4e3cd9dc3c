//! `mmsr-host eval` as a library call, generic over the policy and the
//! search tools: load the split, roll every question out under the
//! workflow, score, optionally judge, and save `RUN_DIR/eval/<label>.json`.

use super::config::{EvalSection, report_path};
use super::judge::{Judge, judge_all};
use super::partial::{PartialLog, fingerprint, partial_path};
use super::workflow::{Workflow, WorkflowRunner, question_result};
use super::{EvalReport, summarize, table};
use crate::data;
use crate::policy::Policy;
use crate::rollout::Prompts;
use crate::tools::SearchTools;
use crate::train::config::TrainConfig;
use crate::train::{RunControl, StopPoint, Stopped};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// What an eval produced, and where it was saved.
pub struct EvalOutput {
    pub report: EvalReport,
    pub path: PathBuf,
    /// The console table (one row).
    pub table: String,
}

/// The report's label: `--label`, else `eval.label`, else the workflow.
pub fn label_for(eval: &EvalSection, workflow: Workflow, flag: Option<&str>) -> String {
    flag.filter(|l| !l.is_empty())
        .map(str::to_string)
        .or_else(|| (!eval.label.is_empty()).then(|| eval.label.clone()))
        .unwrap_or_else(|| workflow.name().to_string())
}

/// Runs the eval; `handle` must belong to a multi-threaded runtime and this
/// must not be called from one of its worker threads. Results are kept a
/// chunk at a time beside the report (`eval/<label>.partial.jsonl`): with
/// `control.resume` an interrupted eval continues after its last whole
/// chunk, and a stop requested through `control.stop` ends it after the
/// chunk under way.
#[allow(clippy::too_many_arguments)]
pub fn run_eval<P: Policy, T: SearchTools + 'static>(
    base: &TrainConfig,
    eval: &EvalSection,
    workflow: Workflow,
    label: &str,
    policy: &mut P,
    tools: Arc<T>,
    judge: Option<&dyn Judge>,
    handle: &Handle,
    control: RunControl,
) -> Result<EvalOutput> {
    anyhow::ensure!(
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !label.starts_with('.'),
        "eval label {label:?} must be a file name: letters, digits, '-', '_' or '.'"
    );
    let dataset_path = eval.dataset(base);
    let samples = data::spread(
        data::load(Path::new(dataset_path), &base.data.load_options())?.samples,
        eval.max_samples,
    );
    let prompts =
        Arc::new(Prompts::load(&base.rollout.prompts_dir).context("rollout.prompts_dir")?);
    let path = report_path(Path::new(&base.run.dir), label);
    let partial = partial_path(&path);
    let ids: Vec<String> = samples.iter().map(|s| s.id.clone()).collect();
    let rollout = eval.rollout(base);
    let fp = fingerprint(&[
        workflow.name(),
        &base.model.path,
        dataset_path,
        &ids.join("\n"),
        &serde_json::to_string(&rollout)?,
        &serde_json::to_string(&eval.rag)?,
        &serde_json::to_string(&base.reward)?,
        &eval.seed.to_string(),
        &eval.chunk.to_string(),
    ]);
    let (mut log, mut results) = match (control.resume, partial.exists()) {
        (true, true) => PartialLog::resume(&partial, &fp, &ids, eval.chunk.max(1))?,
        (false, true) => bail!(
            "{} holds an unfinished eval: pass --resume to continue it, or remove it",
            partial.display()
        ),
        (true, false) if path.exists() => bail!(
            "--resume: {} is a finished eval, with nothing left to resume",
            path.display()
        ),
        (resume, false) => {
            if resume {
                tracing::warn!(file = %partial.display(), "--resume: no unfinished eval; starting afresh");
            }
            (PartialLog::create(&partial, &fp)?, Vec::new())
        }
    };
    if !results.is_empty() {
        tracing::info!(file = %partial.display(), questions = results.len(), "resuming the eval");
    }
    let progress = progress_bar(
        base.run.progress,
        samples.len(),
        &format!("eval {workflow} (questions)"),
    );
    progress.set_position(results.len() as u64);
    let bar = progress.clone();
    let runner = WorkflowRunner {
        rollout,
        rag: eval.rag.clone(),
        prompts,
        tools,
        handle: handle.clone(),
        tool_timeout: Duration::from_secs(eval.tool_timeout_s),
        chunk: eval.chunk,
        seed: eval.seed,
        on_progress: Some(Box::new(move |n| bar.set_position(n as u64))),
    };
    let first_chunk = results.len() / eval.chunk.max(1);
    runner.run_from(
        policy,
        workflow,
        &samples,
        first_chunk,
        &mut |start, outcomes| {
            let done: Vec<_> = samples[start..]
                .iter()
                .zip(&outcomes)
                .map(|(s, o)| question_result(s, o, &base.reward))
                .collect();
            log.append(&done)?;
            results.extend(done);
            if control.stop.is_requested() && results.len() < samples.len() {
                return Err(Stopped {
                    what: "eval",
                    at: StopPoint::Questions {
                        done: results.len(),
                        total: samples.len(),
                    },
                    checkpoint: Some(partial.clone()),
                }
                .into());
            }
            Ok(())
        },
    )?;
    progress.finish_and_clear();
    let mut report = EvalReport::new(
        label,
        workflow.name(),
        &base.model.path,
        dataset_path,
        results,
    );
    if let Some(j) = judge {
        // Saved before judging too: a judge that hangs or an interrupt
        // while judging keeps the rollouts.
        report.save(&path)?;
        let stats = handle.block_on(judge_all(&mut report.results, j, eval.judge.concurrency));
        report.judge = Some(stats);
        report.summary = summarize(&report.results);
    }
    report.save(&path)?;
    drop(log);
    std::fs::remove_file(&partial)
        .with_context(|| format!("removing {} (the report is whole)", partial.display()))?;
    let table = table::render_text(&[(label.to_string(), report.summary.clone())]);
    Ok(EvalOutput {
        report,
        path,
        table,
    })
}

/// A progress bar on stderr when asked for and stderr is a terminal;
/// hidden otherwise (tests, logs).
pub fn progress_bar(show: bool, len: usize, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
