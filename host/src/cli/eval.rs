//! `mmsr-host eval | report`, and the policy plug both `eval` and `sft` use.
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
use mmsr_trainer::sft::PolicyInit;
use mmsr_trainer::testkit::BigramPolicy;
use mmsr_trainer::tools::{ImageQuery, ObservationPart, SearchTools, ToolFuture, ToolObservation};
use mmsr_trainer::train::config::{ModelConfig, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::pipeline::{SearchConfig, SearchPipeline};
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

// ───────────────────────────── the policy plug ─────────────────────────────

/// A command's work with the policy, whatever the policy's type.
pub trait PolicyJob {
    type Output;
    fn run<P: TrainablePolicy>(self, policy: &mut P) -> anyhow::Result<Self::Output>;
}

/// `model_type` of the tiny bigram test policy's export
/// (`mmsr_trainer::testkit::BigramPolicy`): lets `sft` and `eval` run end to
/// end, in tests, without a real model.
pub const BIGRAM_MODEL_TYPE: &str = "mmsr-bigram";

fn model_type(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("model.path: reading {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("model.path: {} is not JSON", path.display()))?;
    json.get("model_type")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .with_context(|| format!("model.path: {} has no \"model_type\"", path.display()))
}

/// THE ONE PLACE A POLICY TYPE IS CHOSEN. Builds the policy that `model`
/// names (by its config.json's `model_type`) and hands it to `job`.
///
/// COORDINATOR: plug the Qwen2.5-VL policy in here, as a match arm:
/// ```text
/// "qwen2_5_vl" => {
///     let opts = PolicyOptions { /* from `model`: dtype, device, freeze_vision, lora, … */ };
///     let mut policy = match init {
///         PolicyInit::Load => QwenVlPolicy::load(dir, &opts)?,
///         PolicyInit::Random => QwenVlPolicy::init_random(dir, seed, &opts)?,
///     };
///     job.run(&mut policy)
/// }
/// ```
pub fn with_policy<J: PolicyJob>(
    model: &ModelConfig,
    init: PolicyInit,
    seed: u64,
    job: J,
) -> anyhow::Result<J::Output> {
    let dir = Path::new(&model.path);
    let kind = model_type(dir)?;
    match kind.as_str() {
        BIGRAM_MODEL_TYPE => {
            let mut policy = BigramPolicy::new(seed, 0.0);
            if init == PolicyInit::Load {
                load_parameters(&policy, &dir.join("model.safetensors"))?;
            }
            job.run(&mut policy)
        }
        other => bail!(
            "model.path {}: no policy for model_type {other:?} is linked into this build (known: {BIGRAM_MODEL_TYPE:?})",
            dir.display()
        ),
    }
}

/// Copies a safetensors file into the policy's trainable parameters by
/// name; every parameter must be there with its shape.
fn load_parameters<P: TrainablePolicy>(policy: &P, path: &Path) -> anyhow::Result<()> {
    let saved = tch::Tensor::read_safetensors(path)
        .with_context(|| format!("reading weights {}", path.display()))?;
    tch::no_grad(|| {
        for (name, mut param) in policy.trainable_parameters() {
            let src = saved
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t)
                .with_context(|| format!("{} has no tensor `{name}`", path.display()))?;
            if src.size() != param.size() {
                bail!(
                    "{}: `{name}` has shape {:?}, the model {:?}",
                    path.display(),
                    src.size(),
                    param.size()
                );
            }
            param.copy_(src);
        }
        Ok(())
    })
}

// ─────────────────────────────── search tools ───────────────────────────────

/// The `[search]` section of the (overridden) config, as the host reads it.
pub fn search_config(base: &TrainConfig) -> anyhow::Result<SearchConfig> {
    let mut doc = toml::Table::new();
    doc.insert("search".into(), toml::Value::Table(base.search.clone()));
    SearchConfig::from_toml(&toml::to_string(&doc)?).context("[search]")
}

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
        let body = reply.text().await.context("reading the judge's reply")?;
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

impl PolicyJob for EvalJob<'_> {
    type Output = mmsr_trainer::eval::EvalOutput;
    fn run<P: TrainablePolicy>(self, policy: &mut P) -> anyhow::Result<Self::Output> {
        run_workflow_eval(
            self.base,
            self.eval,
            self.workflow,
            &self.label,
            policy,
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
    /// of the gold lines; a 500 for the prediction "boom".
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

    #[test]
    fn bigram_weights_load_by_name_and_shape() {
        let tmp = tempfile::tempdir().unwrap();
        let trained = BigramPolicy::new(3, 1.0);
        trained.export(tmp.path()).unwrap();
        let fresh = BigramPolicy::new(4, 0.0);
        load_parameters(&fresh, &tmp.path().join("model.safetensors")).unwrap();
        let (a, b) = (
            &trained.trainable_parameters()[0].1,
            &fresh.trainable_parameters()[0].1,
        );
        assert!(a.allclose(b, 0.0, 0.0, false));
        tch::Tensor::write_safetensors(
            &[(
                "bigram.weight",
                tch::Tensor::zeros([2, 2], tch::kind::FLOAT_CPU),
            )],
            tmp.path().join("bad.safetensors"),
        )
        .unwrap();
        let err = load_parameters(&fresh, &tmp.path().join("bad.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("shape"), "{err}");
        assert_eq!(model_type(tmp.path()).unwrap(), BIGRAM_MODEL_TYPE);
        std::fs::write(
            tmp.path().join("config.json"),
            "{\"model_type\": \"llama\"}",
        )
        .unwrap();
        struct Nothing;
        impl PolicyJob for Nothing {
            type Output = ();
            fn run<P: TrainablePolicy>(self, _: &mut P) -> anyhow::Result<()> {
                Ok(())
            }
        }
        let model = ModelConfig {
            path: tmp.path().display().to_string(),
            ..Default::default()
        };
        let err = with_policy(&model, PolicyInit::Load, 0, Nothing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no policy for model_type \"llama\""), "{err}");
    }
}
