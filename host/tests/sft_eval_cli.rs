//! `mmsr-host sft` and `mmsr-host eval` end to end as separate processes,
//! on a small demo world with the real `.wasm` tools against the offline
//! engine (`backend = "local"`), with the tiny bigram test policy (model
//! type `mmsr-bigram`); then `mmsr-host report` over the run. Also the
//! workflows through the real pipeline with a scripted policy, and broken
//! configs named. Needs the built tools (`make tools`).

use mmsr_host::pipeline::{SearchConfig, SearchPipeline};
use mmsr_host::runtime::HostOptions;
use mmsr_trainer::demo::world::Split;
use mmsr_trainer::demo::{self, DemoDataConfig, Layout};
use mmsr_trainer::eval::EvalReport;
use mmsr_trainer::eval::config::RagConfig;
use mmsr_trainer::eval::{Workflow, WorkflowRunner};
use mmsr_trainer::rollout::{Prompts, RolloutConfig};
use mmsr_trainer::testkit::{ChatTokens, ScriptedPolicy};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn host() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mmsr-host"))
}

/// A world of `known` towns, twice as many unknown ones in training, and
/// as many unknown test towns as known.
fn world_config(known: usize) -> DemoDataConfig {
    let mut c = DemoDataConfig {
        vocab_size: 600,
        ..DemoDataConfig::default()
    };
    (
        c.world.known,
        c.world.unknown_train,
        c.world.unknown_test,
        c.world.decoys,
    ) = (known, 2 * known, known.max(4), known.max(4));
    c
}

struct Setup {
    _tmp: tempfile::TempDir,
    world: PathBuf,
    run: PathBuf,
    config: PathBuf,
}

/// A small world, a bigram model dir, and one config holding `[sft]`,
/// `[eval]` and `[search]`.
fn setup(known: usize) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let world = tmp.path().join("world");
    demo::generate(&world, &world_config(known), &[]).unwrap();
    let model = tmp.path().join("bigram");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(
        model.join("config.json"),
        "{\"model_type\": \"mmsr-bigram\"}\n",
    )
    .unwrap();
    let layout = Layout::new(&world);
    let run = tmp.path().join("run");
    let s = |p: &Path| p.display().to_string();
    let config = tmp.path().join("demo.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[run]
dir = {run:?}
seed = 3
epochs = 2
progress = false

[model]
path = {model:?}

[data]
train = {train:?}
val = {test:?}

[rollout]
prompts_dir = {prompts:?}
max_turn_tokens = 48
max_response_tokens = 160

[actor]
lr = 0.05

[sft]
world = {world:?}
init = "random"
batch_size = 8
micro_batch = 4

[eval]
max_samples = 8

[search]
backend = "local"
corpus = {corpus:?}
manifest = {manifest:?}
deadline_s = 60
"#,
            run = s(&run),
            model = s(&model),
            train = s(&layout.data(Split::Train)),
            test = s(&layout.data(Split::Test)),
            prompts = s(&repo().join("configs/demo/prompts")),
            world = s(&layout.world()),
            corpus = s(&layout.corpus()),
            manifest = s(&repo().join("configs/tools.toml")),
        ),
    )
    .unwrap();
    Setup {
        _tmp: tmp,
        world,
        run,
        config,
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn run_err(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `cmd` started with its output piped and its log (info) on stderr.
fn spawn_logging(cmd: &mut Command) -> (Child, BufReader<ChildStderr>) {
    let mut child = cmd
        .env("MMSR_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = BufReader::new(child.stderr.take().unwrap());
    (child, err)
}

/// Reads `err` into `text` until `text` holds `what`.
fn read_until(err: &mut BufReader<ChildStderr>, text: &mut String, what: &str) {
    while !text.contains(what) {
        let n = err.read_line(text).unwrap();
        assert!(n > 0, "ended before {what:?}: {text}");
    }
}

/// Ctrl-C to `child`.
fn interrupt(child: &Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn sft_then_every_workflow_then_the_report() {
    let s = setup(3);
    let out = run_ok(
        host()
            .arg("sft")
            .arg("--config")
            .arg(&s.config)
            .arg("--json"),
    );
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let data = &summary["data"];
    assert_eq!(data["samples"], 36, "all 36 train questions: {summary}");
    assert!(data["with_search"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(
        data["tool_errors"], 0,
        "the real tools answered every search: {summary}"
    );
    assert!(
        summary["last_loss"].as_f64().unwrap() < summary["first_loss"].as_f64().unwrap(),
        "{summary}"
    );
    let model = s.run.join("model");
    assert!(model.join("model.safetensors").is_file());
    // A second run into the same run dir would replace the model: refused.
    let weights = std::fs::read(model.join("model.safetensors")).unwrap();
    let e = run_err(host().arg("sft").arg("--config").arg(&s.config));
    assert!(e.contains("already holds a finished SFT run"), "{e}");
    // Nor is a finished run resumed.
    let e = run_err(host().args(["sft", "--resume", "--config"]).arg(&s.config));
    assert!(e.contains("already holds a finished SFT run"), "{e}");
    assert_eq!(
        std::fs::read(model.join("model.safetensors")).unwrap(),
        weights
    );

    let eval = |workflow: &str, label: &str, extra: &[&str]| -> EvalReport {
        let text = run_ok(
            host()
                .args(["eval", "--workflow", workflow, "--label", label, "--config"])
                .arg(&s.config)
                .arg(format!("model.path={}", model.display()))
                .args(extra),
        );
        assert!(text.lines().nth(2).unwrap().starts_with(label), "{text}");
        EvalReport::load(&s.run.join("eval").join(format!("{label}.json"))).unwrap()
    };
    let rag = eval("rag", "sft-rag", &[]);
    let o = &rag.summary.overall;
    assert_eq!(o.questions, 8, "eval.max_samples");
    assert_eq!((o.image_search_ratio, o.text_search_ratio), (1.0, 1.0));
    assert_eq!(o.mean_tool_calls, 2.0);
    assert_eq!(
        rag.results.iter().map(|r| r.tool_errors).sum::<usize>(),
        0,
        "the real tools answered"
    );
    assert_eq!(rag.workflow, "rag");
    assert_eq!(rag.model, model.display().to_string());
    // Direct needs no search tools: a broken [search] does not stop it.
    let direct = eval("direct", "sft-direct", &["search.corpus=/no/corpus"]);
    assert_eq!(direct.summary.overall.search_ratio, 0.0);
    let on_demand = eval("on-demand", "sft-on-demand", &[]);
    assert_eq!(on_demand.summary.overall.questions, 8);
    assert!(
        on_demand
            .results
            .iter()
            .all(|r| r.image_searches <= 1 && r.text_searches <= 2)
    );

    // The report reads the SFT curve and the three evals.
    let text = run_ok(host().arg("report").arg(&s.run));
    for label in ["sft-direct", "sft-on-demand", "sft-rag"] {
        assert!(text.contains(label), "{text}");
    }
    let html = std::fs::read_to_string(s.run.join("report/index.html")).unwrap();
    assert!(html.contains("<svg"), "plots inlined");
    assert!(s.world.join("world.json").is_file());
}

/// Ctrl-C during `sft`'s fit: it stops after the step under way,
/// checkpoints it, exits 130 and says how to continue; `--resume` then
/// writes the model an uninterrupted run writes. Then the same for `eval`.
#[test]
fn interrupted_sft_and_eval_resume_to_what_uninterrupted_runs_write() {
    let s = setup(3);
    // Long enough to be caught mid-fit; no checkpoints but the stop's.
    let long = ["run.epochs=40", "run.save_every=0"];
    let whole = s.run.with_file_name("whole");
    run_ok(
        host()
            .arg("sft")
            .arg("--config")
            .arg(&s.config)
            .args(long)
            .arg(format!("run.dir={:?}", whole.display().to_string())),
    );

    let child = host()
        .arg("sft")
        .arg("--config")
        .arg(&s.config)
        .args(long)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the train set is written, the fit is under way.
    let started = std::time::Instant::now();
    while !s.run.join("sft_data.safetensors").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(!s.run.join("model").exists(), "no model from a stopped fit");
    let step: usize = stderr
        .split("SFT stopped on request after step ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stop message: {stderr}"));
    let checkpoint = s.run.join("checkpoints").join(format!("step-{step:08}"));
    assert_eq!(checkpoint.is_dir(), step > 0, "{stderr}");
    assert!(
        stderr.contains("--resume") && !stderr.contains("error:"),
        "{stderr}"
    );

    let out = run_ok(
        host()
            .args(["sft", "--resume", "--config"])
            .arg(&s.config)
            .args(long),
    );
    if step > 0 {
        assert!(
            out.contains(&format!("(resumed after step {step})")),
            "{out}"
        );
    }
    for file in ["metrics.jsonl", "model/model.safetensors"] {
        assert!(
            std::fs::read(s.run.join(file)).unwrap() == std::fs::read(whole.join(file)).unwrap(),
            "{file} differs from the uninterrupted run's"
        );
    }

    // The same for `eval`, a question at a time. Ctrl-C once the search
    // engine is up (the handlers are in place, no question is done): the
    // stop comes after the first.
    let eval = |label: &str| {
        let mut cmd = host();
        cmd.args([
            "eval",
            "--workflow",
            "on-demand",
            "--label",
            label,
            "--config",
        ])
        .arg(&s.config)
        .arg(format!(
            "model.path={:?}",
            s.run.join("model").display().to_string()
        ))
        .args(["eval.chunk=1", "eval.max_samples=12"]);
        cmd
    };
    run_ok(&mut eval("whole"));
    let partial = s.run.join("eval/cut.partial.jsonl");
    let (mut child, mut err) = spawn_logging(&mut eval("cut"));
    let mut stderr = String::new();
    read_until(&mut err, &mut stderr, "search engine listening");
    interrupt(&child);
    err.read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    let done: usize = stderr
        .split("eval stopped on request after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stop message: {stderr}"));
    assert_eq!(done, 1, "{stderr}");
    let lines = std::fs::read_to_string(&partial).unwrap().lines().count();
    assert_eq!(lines, 1 + done, "a header and a line per question");
    let e = run_err(&mut eval("cut"));
    assert!(e.contains("holds an unfinished eval"), "{e}");
    run_ok(eval("cut").arg("--resume"));
    assert!(!partial.exists());
    let report = |label: &str| EvalReport::load(&s.run.join(format!("eval/{label}.json"))).unwrap();
    assert_eq!(report("cut").results, report("whole").results);
}

/// A second Ctrl-C does not wait for the step boundary: sent while `sft`
/// still builds its train set (one chunk of 36 questions, seconds), it
/// exits at once, 130, with no step, no train set and no panic.
#[test]
fn a_second_ctrl_c_exits_at_once() {
    let s = setup(3);
    let (mut child, mut err) = spawn_logging(host().arg("sft").arg("--config").arg(&s.config));
    let mut stderr = String::new();
    for wait_for in ["search engine listening", "Ctrl-C again exits now"] {
        read_until(&mut err, &mut stderr, wait_for);
        interrupt(&child);
    }
    err.read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("Ctrl-C again: exiting now"), "{stderr}");
    assert!(
        !stderr.contains("stopped on request") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(!s.run.join("sft_data.safetensors").exists());
    assert!(!s.run.join("model").exists());
}

#[test]
fn broken_configs_and_arguments_are_named() {
    let s = setup(3);
    let cfg = |command: &str| {
        let mut c = host();
        c.arg(command).arg("--config").arg(&s.config);
        c
    };
    let e = run_err(cfg("sft").arg("sft.batchsize=2"));
    assert!(
        e.contains("set by override `sft.batchsize=2`: `sft.batchsize`: unknown field"),
        "{e}"
    );
    let e = run_err(cfg("eval").args(["--workflow", "rag", "eval.temprature=1"]));
    assert!(e.contains("temprature"), "{e}");
    let e = run_err(cfg("eval").args(["--workflow", "ondemand"]));
    assert!(e.contains("ondemand") && e.contains("on-demand"), "{e}");
    let e = run_err(cfg("eval").args(["--workflow", "direct", "data.val=", "eval.data="]));
    assert!(e.contains("eval.data (or data.val)"), "{e}");
    let e = run_err(cfg("eval").args(["--workflow", "direct", "model.path=/nonexistent/m"]));
    assert!(
        e.contains("model.path") && e.contains("/nonexistent/m"),
        "{e}"
    );
    let e = run_err(cfg("eval").args(["--workflow", "rag", "search.corpus=/no/corpus"]));
    assert!(e.contains("/no/corpus"), "{e}");
    let e = run_err(cfg("eval").args(["--workflow", "rag", "search.top_kk=3"]));
    assert!(e.contains("`search.top_kk`: unknown field"), "{e}");
    let e = run_err(cfg("sft").arg("sft.world=/no/world.json"));
    assert!(
        e.contains("sft.world") && e.contains("/no/world.json"),
        "{e}"
    );
    let e =
        run_err(cfg("eval").args(["--workflow", "direct", "--judge-url", "http://127.0.0.1:9"]));
    assert!(e.contains("eval.judge.model"), "{e}");
    let e = run_err(host().args(["eval", "--workflow", "rag", "--config", "/no/such.toml"]));
    assert!(e.contains("/no/such.toml"), "{e}");
}

/// The workflows with the real pipeline: what the model is shown comes from
/// the engine through the wasm tools.
#[test]
fn rag_through_the_real_pipeline_shows_real_results() {
    // Big enough for the engine's Lens to recognise some photos.
    let s = setup(10);
    let layout = Layout::new(&s.world);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = SearchConfig::from_file(&s.config).unwrap();
    let tools = Arc::new(
        rt.block_on(SearchPipeline::from_config(&config, HostOptions::default()))
            .unwrap(),
    );
    let samples = mmsr_trainer::data::load(&layout.data(Split::Test), &Default::default())
        .unwrap()
        .samples;
    let runner = WorkflowRunner {
        rollout: RolloutConfig {
            temperature: 0.0,
            ..Default::default()
        },
        rag: RagConfig::default(),
        prompts: Arc::new(Prompts::builtin()),
        tools,
        handle: rt.handle().clone(),
        tool_timeout: Duration::from_secs(60),
        chunk: 8,
        seed: 0,
        on_progress: None,
    };
    // A policy that answers at once: RAG still searches twice.
    let mut policy =
        ScriptedPolicy::new(|_| vec!["<reason>r</reason><answer> x</answer>".to_string(); 3]);
    let out = runner.run(&mut policy, Workflow::Rag, &samples).unwrap();
    let (mut shows_town, mut with_thumbnails) = (0, 0);
    for (o, sample) in out.iter().zip(&samples) {
        let t = &o.trajectory;
        assert_eq!(
            (t.image_searches, t.text_searches, t.tool_errors),
            (1, 1, 0)
        );
        let shown = ChatTokens::decode(&t.transcript.tokens);
        assert!(shown.contains("Text search results for"), "{shown}");
        with_thumbnails += usize::from(t.transcript.images.len() > 1);
        let town = world_town(&layout, sample);
        let image_block = shown.split("<information>").nth(1).unwrap();
        shows_town += usize::from(image_block.contains(&town));
    }
    assert!(
        with_thumbnails > 0,
        "no image search brought thumbnails back"
    );
    // How often Lens puts the pictured town in the image results (printed,
    // not asserted: the engine's hit rate is the demo world's business).
    println!(
        "image results: thumbnails for {with_thumbnails}/{n}, the pictured town named for {shows_town}/{n} test questions",
        n = out.len()
    );
}

/// The town a demo sample pictures, from the world and its photo's name.
fn world_town(layout: &Layout, sample: &mmsr_trainer::data::Sample) -> String {
    let world: mmsr_trainer::demo::world::World =
        serde_json::from_slice(&std::fs::read(layout.world()).unwrap()).unwrap();
    let id = Path::new(sample.image_url.as_deref().unwrap())
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let q = world.questions.iter().find(|q| q.id == id).unwrap();
    world.towns[q.town].name.clone()
}
