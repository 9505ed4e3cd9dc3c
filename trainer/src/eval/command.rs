//! `mmsr-host eval` as a library call, generic over the policy and the
//! search tools: load the split, roll every question out under the
//! workflow, score, optionally judge, and save `RUN_DIR/eval/<label>.json`.

use super::config::{EvalSection, report_path};
use super::judge::{Judge, judge_all};
use super::workflow::{Workflow, WorkflowRunner, question_result};
use super::{EvalReport, summarize, table};
use crate::data;
use crate::policy::Policy;
use crate::rollout::Prompts;
use crate::tools::SearchTools;
use crate::train::config::TrainConfig;
use anyhow::{Context, Result};
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
/// must not be called from one of its worker threads.
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
    let progress = progress_bar(
        base.run.progress,
        samples.len(),
        &format!("eval {workflow} (questions)"),
    );
    let bar = progress.clone();
    let runner = WorkflowRunner {
        rollout: eval.rollout(base),
        rag: eval.rag.clone(),
        prompts,
        tools,
        handle: handle.clone(),
        tool_timeout: Duration::from_secs(eval.tool_timeout_s),
        chunk: eval.chunk,
        seed: eval.seed,
        on_progress: Some(Box::new(move |n| bar.set_position(n as u64))),
    };
    let outcomes = runner.run(policy, workflow, &samples)?;
    progress.finish_and_clear();
    let results: Vec<_> = samples
        .iter()
        .zip(&outcomes)
        .map(|(s, o)| question_result(s, o, &base.reward))
        .collect();
    let mut report = EvalReport::new(
        label,
        workflow.name(),
        &base.model.path,
        dataset_path,
        results,
    );
    let path = report_path(Path::new(&base.run.dir), label);
    if let Some(j) = judge {
        // Saved before judging too: a judge that hangs or an interrupt
        // while judging keeps the rollouts.
        report.save(&path)?;
        let stats = handle.block_on(judge_all(&mut report.results, j, eval.judge.concurrency));
        report.judge = Some(stats);
        report.summary = summarize(&report.results);
    }
    report.save(&path)?;
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
