//! `mmsr-host eval | report`.
//!
//! `mmsr-host eval --config FILE --workflow direct|rag|on-demand [--label L]
//! [--judge-url URL --judge-model M] [key=value …]` rolls every question of
//! `eval.data` (or `data.val`) out once under the workflow, with the
//! `[search]` tools of the same file, and writes `run.dir/eval/<label>.json`
//! plus the table on the console.
use anyhow::Context;
use clap::Args;
use mmsr_trainer::eval::config::{EvalSection, load_command_config};
use mmsr_trainer::eval::judge::Judge;
use mmsr_trainer::eval::{Workflow, label_for, run_eval as run_workflow_eval};
use mmsr_trainer::policy::TrainablePolicy;
use mmsr_trainer::tools::{ImageQuery, ObservationPart, SearchTools, ToolFuture, ToolObservation};
use mmsr_trainer::train::config::TrainConfig;
use mmsr_trainer::train::{PolicyInit, PolicyVisitor, RunControl, StopRequest, with_policy};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::train::search_config;
use crate::judge::OpenAiJudge;
use crate::pipeline::SearchPipeline;
use crate::runtime::HostOptions;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// TOML with the trainer's sections, `[eval]` and `[search]`.
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, value_parser = ["direct", "rag", "on-demand"])]
    pub workflow: String,
    /// The report's name: `run.dir/eval/<label>.json` (default: eval.label, else the workflow).
    #[arg(long)]
    pub label: Option<String>,
    /// An OpenAI-compatible endpoint to judge answers with (sets eval.judge.url).
    #[arg(long)]
    pub judge_url: Option<String>,
    /// The judge's model name (sets eval.judge.model).
    #[arg(long)]
    pub judge_model: Option<String>,
    /// Print the summary as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Continue an interrupted eval of the same label from its results so
    /// far (`run.dir/eval/<label>.partial.jsonl`).
    #[arg(long)]
    pub resume: bool,
    /// Dotted overrides, e.g. `model.path=runs/rl/model eval.max_samples=50`.
    pub overrides: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run dir: `metrics.jsonl` in it or its sub-dirs, and `eval/*.json`.
    pub run_dir: PathBuf,
}

// ─────────────────────────────── search tools ───────────────────────────────

/// The eval's tools: the pipeline, or none for the direct workflow (which
/// never searches, so it needs no `[search]`).
enum EvalTools {
    Pipeline(Box<SearchPipeline>),
    Unavailable,
}

fn unavailable() -> ToolObservation {
    ToolObservation {
        parts: vec![ObservationPart::Text("Search is not available.".into())],
        error: Some("no search tools in this workflow".into()),
    }
}

impl SearchTools for EvalTools {
    fn image_search<'a>(&'a self, image: &'a ImageQuery) -> ToolFuture<'a> {
        match self {
            EvalTools::Pipeline(p) => p.image_search(image),
            EvalTools::Unavailable => Box::pin(async { unavailable() }),
        }
    }
    fn text_search<'a>(&'a self, query: &'a str) -> ToolFuture<'a> {
        match self {
            EvalTools::Pipeline(p) => p.text_search(query),
            EvalTools::Unavailable => Box::pin(async { unavailable() }),
        }
    }
}

// ──────────────────────────────── the command ────────────────────────────────

struct EvalJob<'a> {
    base: &'a TrainConfig,
    eval: &'a EvalSection,
    workflow: Workflow,
    label: String,
    tools: Arc<EvalTools>,
    judge: Option<OpenAiJudge>,
    handle: tokio::runtime::Handle,
    control: RunControl,
}

impl PolicyVisitor for EvalJob<'_> {
    type Output = mmsr_trainer::eval::EvalOutput;
    fn visit<P: TrainablePolicy>(self, mut policy: P) -> anyhow::Result<Self::Output> {
        run_workflow_eval(
            self.base,
            self.eval,
            self.workflow,
            &self.label,
            &mut policy,
            self.tools,
            self.judge.as_ref().map(|j| j as &dyn Judge),
            &self.handle,
            self.control,
        )
    }
}

/// `stop`, once requested, ends the eval after the chunk under way.
pub fn run_eval(args: EvalArgs, stop: StopRequest) -> anyhow::Result<ExitCode> {
    let workflow: Workflow = args.workflow.parse()?;
    let mut overrides = args.overrides.clone();
    if let Some(url) = &args.judge_url {
        overrides.push(format!("eval.judge.url={url:?}"));
    }
    if let Some(model) = &args.judge_model {
        overrides.push(format!("eval.judge.model={model:?}"));
    }
    let (base, eval): (TrainConfig, EvalSection) =
        load_command_config(&args.config, &overrides, "eval")?;
    let label = label_for(&eval, workflow, args.label.as_deref());
    let rt = super::runtime()?;
    let tools = match workflow {
        Workflow::Direct => EvalTools::Unavailable,
        _ => EvalTools::Pipeline(Box::new(
            rt.block_on(SearchPipeline::from_config(
                &search_config(&base)?,
                HostOptions::default(),
            ))
            .context("starting the search tools")?,
        )),
    };
    let judge = if eval.judge.enabled() {
        Some(OpenAiJudge::new(&eval.judge)?)
    } else {
        None
    };
    let job = EvalJob {
        base: &base,
        eval: &eval,
        workflow,
        label,
        tools: Arc::new(tools),
        judge,
        handle: rt.handle().clone(),
        control: RunControl::new(args.resume).with_stop(stop),
    };
    let out = with_policy(&base.model, PolicyInit::Load, eval.seed, job)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out.report.summary)?);
    } else {
        print!("{}", out.table);
        if let Some(j) = &out.report.judge {
            println!(
                "judge: {} judged, {} unanswered, {} failed",
                j.judged,
                j.unanswered,
                j.failed.len()
            );
        }
        println!("eval report: {}", out.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let out = mmsr_trainer::report::write_report(&args.run_dir)?;
    let evals = mmsr_trainer::report::find_evals(&args.run_dir)?;
    if !evals.is_empty() {
        let rows: Vec<(String, _)> = evals
            .iter()
            .map(|e| (e.label.clone(), e.summary.clone()))
            .collect();
        print!("{}", mmsr_trainer::eval::table::render_text(&rows));
    }
    println!(
        "report: {} ({} files in {})",
        out.html.display(),
        out.files.len(),
        out.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
