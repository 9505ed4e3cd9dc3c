//! `mmsr-host eval | report`.
//!
//! `mmsr-host eval --config FILE --workflow direct|rag|on-demand [--label L]
//! [--judge-url URL --judge-model M] [key=value …]` rolls every question of
//! `eval.data` (or `data.val`) out once under the workflow, with the
//! `[search]` tools of the same file, and writes `run.dir/eval/<label>.json`
//! plus the table on the console.
use anyhow::{Context, bail};
use clap::Args;
use mmsr_trainer::eval::config::{EvalSection, JudgeConfig, load_command_config};
use mmsr_trainer::eval::judge::{
    JUDGE_SYSTEM, Judge, JudgeFuture, JudgeItem, judge_prompt, parse_verdict,
};
use mmsr_trainer::eval::{Workflow, label_for, run_eval as run_workflow_eval};
use mmsr_trainer::policy::TrainablePolicy;
use mmsr_trainer::tools::{ImageQuery, ObservationPart, SearchTools, ToolFuture, ToolObservation};
use mmsr_trainer::train::config::TrainConfig;
use mmsr_trainer::train::{PolicyInit, PolicyVisitor, with_policy};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::train::search_config;
use crate::pipeline::SearchPipeline;
use crate::runtime::HostOptions;
use crate::wire::openai::{ChatMessage, ChatRequest};

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

// ───────────────────────────────── the judge ─────────────────────────────────

/// The LLM judge over an OpenAI-compatible `POST …/v1/chat/completions`.
pub struct OpenAiJudge {
    client: reqwest::Client,
    endpoint: String,
    model: String,
    key: Option<String>,
}

impl OpenAiJudge {
    pub fn new(cfg: &JudgeConfig) -> anyhow::Result<Self> {
        let base = cfg.url.trim_end_matches('/');
        let endpoint = if base.ends_with("/chat/completions") {
            base.to_string()
        } else if base.ends_with("/v1") {
            format!("{base}/chat/completions")
        } else {
            format!("{base}/v1/chat/completions")
        };
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(cfg.timeout_s.max(1)))
                .build()?,
            endpoint,
            model: cfg.model.clone(),
            key: (!cfg.api_key_env.is_empty())
                .then(|| std::env::var(&cfg.api_key_env).ok())
                .flatten()
                .filter(|k| !k.is_empty()),
        })
    }

    async fn ask(&self, item: &JudgeItem) -> anyhow::Result<bool> {
        let request = ChatRequest {
            model: self.model.clone(),
            messages: vec![
                ChatMessage {
                    role: "system".into(),
                    content: JUDGE_SYSTEM.into(),
                },
                ChatMessage {
                    role: "user".into(),
                    content: judge_prompt(item),
                },
            ],
            max_tokens: Some(8),
            temperature: Some(0.0),
        };
        let mut call = self.client.post(&self.endpoint).json(&request);
        if let Some(key) = &self.key {
            call = call.bearer_auth(key);
        }
        let reply = call
            .send()
            .await
            .with_context(|| format!("judge {}", self.endpoint))?;
        let status = reply.status();
        let body = read_capped(reply, MAX_JUDGE_REPLY).await?;
        if !status.is_success() {
            bail!(
                "judge {} returned {status}: {}",
                self.endpoint,
                body.chars().take(200).collect::<String>()
            );
        }
        // Read leniently: compatible servers differ in the other fields.
        let json: serde_json::Value =
            serde_json::from_str(&body).context("the judge's reply is not JSON")?;
        let content = json
            .pointer("/choices/0/message/content")
            .and_then(|c| c.as_str())
            .context("the judge's reply has no choices[0].message.content")?;
        parse_verdict(content)
    }
}

/// A verdict is one word; a reply past this is not a judge's.
const MAX_JUDGE_REPLY: usize = 1 << 20;

/// The reply's body as text, refused once it passes `cap` bytes (a hostile
/// or broken endpoint could otherwise fill memory within the timeout).
async fn read_capped(mut reply: reqwest::Response, cap: usize) -> anyhow::Result<String> {
    let mut body = Vec::new();
    while let Some(chunk) = reply.chunk().await.context("reading the judge's reply")? {
        if body.len() + chunk.len() > cap {
            bail!("the judge's reply is over {cap} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

impl Judge for OpenAiJudge {
    fn judge<'a>(&'a self, item: &'a JudgeItem) -> JudgeFuture<'a> {
        Box::pin(self.ask(item))
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
        )
    }
}

pub fn run_eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A judge endpoint on loopback: CORRECT when the prediction line is one
    /// of the gold lines; a 500 for the prediction "boom", 2 MiB of spaces
    /// for "flood".
    async fn judge_server() -> (String, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::Json<serde_json::Value>| {
                    let log = Arc::clone(&log);
                    async move {
                        let user = body["messages"][1]["content"]
                            .as_str()
                            .unwrap_or("")
                            .to_string();
                        let mut entry = body.0.clone();
                        entry["auth"] = headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string())
                            .into();
                        log.lock().unwrap().push(entry);
                        let pred = user
                            .lines()
                            .find_map(|l| l.strip_prefix("Prediction: "))
                            .unwrap_or("");
                        if pred == "boom" {
                            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down")
                                .into_response();
                        }
                        if pred == "flood" {
                            return " ".repeat(2 * MAX_JUDGE_REPLY).into_response();
                        }
                        let ok = user.lines().any(|l| l.strip_prefix("- ") == Some(pred));
                        let verdict = if ok { "CORRECT" } else { "INCORRECT" };
                        axum::Json(serde_json::json!({
                            "choices": [{"message": {"role": "assistant", "content": verdict}}]
                        }))
                        .into_response()
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), seen)
    }

    use axum::response::IntoResponse;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_judge_speaks_openai_chat_and_reads_the_verdict() {
        let (url, seen) = judge_server().await;
        // Any set variable serves as the key's source (no env writes in tests).
        let key = std::env::var("PATH").unwrap();
        let judge = OpenAiJudge::new(&JudgeConfig {
            url: url.clone(),
            model: "judge-1".into(),
            api_key_env: "PATH".into(),
            ..Default::default()
        })
        .unwrap();
        let item = |answer: &str| JudgeItem {
            question: "Who founded Vorlak?".into(),
            golds: vec!["Ada Brun".into(), "Brun".into()],
            answer: answer.into(),
        };
        assert!(judge.judge(&item("Brun")).await.unwrap());
        assert!(!judge.judge(&item("Carl")).await.unwrap());
        let err = format!("{:#}", judge.judge(&item("boom")).await.unwrap_err());
        assert!(err.contains("500") && err.contains("down"), "{err}");
        let err = format!("{:#}", judge.judge(&item("flood")).await.unwrap_err());
        assert!(err.contains("the judge's reply is over"), "{err}");
        let first = seen.lock().unwrap()[0].clone();
        assert_eq!(first["model"], "judge-1");
        assert_eq!(first["messages"][0]["content"], JUDGE_SYSTEM);
        assert_eq!(first["temperature"], 0.0);
        assert_eq!(first["auth"], format!("Bearer {key}"));
        // The endpoint path is added to a base URL, and an unreachable judge
        // is an error naming it, not a verdict.
        for (given, want) in [
            ("http://h:1", "http://h:1/v1/chat/completions"),
            ("http://h:1/v1/", "http://h:1/v1/chat/completions"),
            (
                "http://h:1/x/chat/completions",
                "http://h:1/x/chat/completions",
            ),
        ] {
            let j = OpenAiJudge::new(&JudgeConfig {
                url: given.into(),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(j.endpoint, want);
        }
        let gone = OpenAiJudge::new(&JudgeConfig {
            url: "http://127.0.0.1:9".into(),
            timeout_s: 2,
            ..Default::default()
        })
        .unwrap();
        let err = format!("{:#}", gone.judge(&item("Brun")).await.unwrap_err());
        assert!(err.contains("127.0.0.1:9"), "{err}");
    }
}
