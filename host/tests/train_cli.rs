//! `mmsr-host train` and `mmsr-host export` as users run them: the bigram
//! policy with the real `.wasm` search tools on the offline engine over a
//! small corpus; a killed run and one stopped by SIGTERM, each resumed
//! with `--resume`; reward rising on a task the bigram can learn; config
//! errors named; every shipped config loads. Needs the built tools
//! (`make tools`).

use mmsr_host::manifest::Manifest;
use mmsr_host::pipeline::SearchConfig;
use mmsr_trainer::policy::TrainablePolicy;
use mmsr_trainer::testkit::BigramPolicy;
use mmsr_trainer::train::{self, StepMetrics, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn picture(seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(160, 120, move |x, y| {
        let (cx, cy) = (40 + seed * 30, 60);
        if (x as i32 - cx as i32).pow(2) + (y as i32 - cy).pow(2) < 900 {
            image::Rgb([200, (seed * 70) as u8, 30])
        } else {
            image::Rgb([(x * 255 / 160) as u8, 40 * seed as u8, (y * 2) as u8])
        }
    })
}

/// A corpus of three pages, and questions whose photos are two of its
/// pictures, as JSONL with an image folder.
fn world(dir: &Path) {
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(corpus.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    picture(1).save(corpus.join("images/tower.png")).unwrap();
    picture(3).save(corpus.join("images/bridge.png")).unwrap();
    picture(1).save(dir.join("data/tower.png")).unwrap();
    picture(3).save(dir.join("data/bridge.png")).unwrap();
    let pages = [
        serde_json::json!({"url": "https://example.org/tower", "title": "Eiffel Tower", "text": "The Eiffel Tower is a lattice tower in Paris. It was completed in 1889.", "images": ["images/tower.png"]}),
        serde_json::json!({"url": "https://example.org/bridge", "title": "Golden Gate Bridge", "text": "The Golden Gate Bridge is a suspension bridge. It opened in 1937.", "images": ["images/bridge.png"]}),
        serde_json::json!({"url": "https://example.org/bread", "title": "Bread", "text": "Bread is baked from flour and water."}),
    ];
    let text: Vec<String> = pages.iter().map(|p| p.to_string()).collect();
    std::fs::write(corpus.join("pages.jsonl"), text.join("\n")).unwrap();
    let rows: Vec<String> = (0..6)
        .map(|i| {
            let image = if i % 2 == 0 { "tower.png" } else { "bridge.png" };
            serde_json::json!({"question": format!("Which number goes with landmark {i}?"), "image": image, "answer": "7"})
                .to_string()
        })
        .collect();
    std::fs::write(dir.join("data/train.jsonl"), rows.join("\n")).unwrap();
}

/// A bigram exported with a prior over `turns`: the model dir `model.path`
/// names.
fn model(dir: &Path, name: &str, im_end_bias: f64, turns: &[&str]) -> PathBuf {
    let out = dir.join(name);
    BigramPolicy::with_prior(5, im_end_bias, turns, 9.0)
        .export(&out)
        .unwrap();
    out
}

fn overrides(dir: &Path, run: &str, model: &Path, extra: &[&str]) -> Vec<String> {
    let q = |p: PathBuf| format!("{:?}", p.display().to_string());
    let mut v = vec![
        format!("run.dir={}", q(dir.join(run))),
        format!("model.path={}", q(model.to_path_buf())),
        format!("data.train={}", q(dir.join("data/train.jsonl"))),
        format!("search.corpus={}", q(dir.join("corpus"))),
        format!("search.manifest={}", q(repo().join("configs/tools.toml"))),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn host() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mmsr-host"));
    cmd.current_dir(repo()).env("MMSR_LOG", "warn");
    cmd
}

fn train(args: &[String], resume: bool) -> Command {
    let mut cmd = host();
    cmd.args(["train", "--config", "configs/bigram-cpu.toml"])
        .args(args);
    if resume {
        cmd.arg("--resume");
    }
    cmd
}

fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mmsr-host failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn metrics(run: &Path) -> Vec<StepMetrics> {
    std::fs::read_to_string(run.join(train::METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn without_times(runs: Vec<StepMetrics>) -> Vec<StepMetrics> {
    runs.into_iter()
        .map(|mut m| {
            m.time = Default::default();
            m
        })
        .collect()
}

const IMAGE_SEARCH: &str = "<search><img></search>";

#[test]
fn searches_run_through_the_wasm_tools_and_killed_or_stopped_runs_resume() {
    let dir = tempfile::tempdir().unwrap();
    world(dir.path());
    // Image searches in about one turn in five; the rest end without action.
    let searcher = model(dir.path(), "searcher", -2.5, &[IMAGE_SEARCH]);
    let extra = [
        "run.total_steps=6",
        "run.save_every=2",
        "run.keep_checkpoints=0",
        "rollout.max_turn_tokens=200",
        "rollout.max_response_tokens=400",
    ];
    let args = overrides(dir.path(), "whole", &searcher, &extra);
    let started = Instant::now();
    let stdout = ok(train(&args, false).output().unwrap());
    eprintln!("6 steps in {:.1}s", started.elapsed().as_secs_f64());
    assert!(stdout.contains("trained steps 1..6"), "{stdout}");
    let whole = metrics(&dir.path().join("whole"));
    assert_eq!(whole.len(), 6);
    let searched: f64 = whole.iter().map(|m| m.search.image_ratio).sum();
    assert!(searched > 0.0, "no image search in 6 steps: {whole:?}");
    assert_eq!(
        whole.iter().map(|m| m.tool_errors).sum::<usize>(),
        0,
        "every search answered"
    );
    assert!(
        whole
            .iter()
            .all(|m| m.time.tools >= 0.0 && m.trajectories == 16)
    );

    // Killed after its first checkpoint, then resumed: the same run.
    let args = overrides(dir.path(), "killed", &searcher, &extra);
    let mut child = train(&args, false).spawn().unwrap();
    let first = dir.path().join("killed/checkpoints/step-00000002");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !first.exists() {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success(), "killed, not finished");
    assert!(metrics(&dir.path().join("killed")).len() < 6);
    let stdout = ok(train(&args, true).output().unwrap());
    assert!(stdout.contains("..6"), "{stdout}");
    assert_eq!(
        without_times(metrics(&dir.path().join("killed"))),
        without_times(whole.clone())
    );

    // SIGTERM (a scheduler's notice) after the first step: the run stops
    // after the step under way, checkpoints it (off the every-2 schedule
    // when odd), exits 143 and says how to continue; the resume is the
    // same run.
    let args = overrides(dir.path(), "stopped", &searcher, &extra);
    let run = dir.path().join("stopped");
    let child = train(&args, false)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = run.join(train::METRICS_FILE);
    let deadline = Instant::now() + Duration::from_secs(300);
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) == 0 {
        assert!(Instant::now() < deadline, "no step logged");
        std::thread::sleep(Duration::from_millis(2));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    let done = metrics(&run).len();
    assert!((1..6).contains(&done), "{done} steps; {stderr}");
    let ck = run.join("checkpoints").join(format!("step-{done:08}"));
    assert!(
        stderr.contains(&format!("GRPO stopped on request after step {done} of 6"))
            && stderr.contains(&ck.display().to_string())
            && stderr.contains("--resume"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("error:"),
        "a stop is not an error: {stderr}"
    );
    assert!(train::checkpoint::load(&ck).is_ok(), "{}", ck.display());
    let stdout = ok(train(&args, true).output().unwrap());
    assert!(
        stdout.contains(&format!("trained steps {}..6", done + 1)),
        "{stdout}"
    );
    assert_eq!(without_times(metrics(&run)), without_times(whole));

    // Export the final checkpoint to a model dir and read it back.
    let out = dir.path().join("exported");
    let run = dir.path().join("killed");
    let stdout = ok(host()
        .args(["export", "--checkpoint"])
        .arg(&run)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap());
    assert!(stdout.contains("step-00000006"), "{stdout}");
    let back = BigramPolicy::load(&out).unwrap();
    let ck = train::checkpoint::load(&run.join("checkpoints/step-00000006")).unwrap();
    assert!(back.trainable_parameters()[0].1.equal(&ck.weights[0].1));
    // A second export into the same dir would overwrite it: refused.
    let before = std::fs::read(out.join("config.json")).unwrap();
    let again = host()
        .args(["export", "--checkpoint"])
        .arg(&run)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && stderr.contains("is not empty"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(out.join("config.json")).unwrap(), before);
    // `--best` of a run that kept no best checkpoint says so.
    let best = host()
        .args(["export", "--best", "--checkpoint"])
        .arg(&run)
        .arg("--out")
        .arg(dir.path().join("best"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&best.stderr);
    assert!(
        !best.status.success()
            && stderr.contains("checkpoints/best.json")
            && stderr.contains("val.keep_best"),
        "{stderr}"
    );
    assert!(!dir.path().join("best").exists());
    // A resume under another config is refused, naming the key.
    let mut other = args.clone();
    other.push("algo.kl_coef=0.5".into());
    let out = train(&other, true).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("algo.kl_coef = 0.001 there, 0.5 now"),
        "{stderr}"
    );
}

#[test]
fn reward_rises_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    world(dir.path());
    let answerer = model(
        dir.path(),
        "answerer",
        0.0,
        &[
            "<answer>3</answer>",
            "<answer>5</answer>",
            "<answer>7</answer>",
        ],
    );
    let extra = [
        "run.total_steps=12",
        "run.save_every=0",
        "rollout.n=8",
        "rollout.max_rounds=1",
        "rollout.max_turn_tokens=40",
        "rollout.max_response_tokens=40",
        "algo.mini_batch=16",
        "actor.lr=0.2",
        "actor.grad_clip=0",
    ];
    ok(
        train(&overrides(dir.path(), "run", &answerer, &extra), false)
            .output()
            .unwrap(),
    );
    let ms = metrics(&dir.path().join("run"));
    let rewards: Vec<f64> = ms.iter().map(|m| m.reward).collect();
    let (first, last) = (
        rewards[..3].iter().sum::<f64>() / 3.0,
        rewards[9..].iter().sum::<f64>() / 3.0,
    );
    assert!(
        last > first + 0.15 && last > 2.0 * first,
        "reward did not rise: {rewards:?}"
    );
    assert!(
        ms.iter()
            .all(|m| m.accuracy <= 1.0 && m.update.optimizer_steps == 2)
    );
}

#[test]
fn config_errors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = |args: &[&str]| {
        let out = host()
            .args(["train", "--config", "configs/bigram-cpu.toml"])
            .args(args)
            .arg(format!("run.dir={:?}", dir.path().display().to_string()))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(&["actor.lrr=1"]);
    assert!(
        e.contains("unknown key `actor.lrr` (did you mean `actor.lr`?)"),
        "{e}"
    );
    let e = err(&["rollout.n=0"]);
    assert!(e.contains("rollout.n must be at least 1"), "{e}");
    let e = err(&["rollout.n=1"]);
    assert!(
        e.contains("config configs/") && e.contains("rollout.n = 1: GRPO compares"),
        "{e}"
    );
    let e = err(&["search.top_kk=3"]);
    assert!(e.contains("`search.top_kk`: unknown field"), "{e}");
    let e = err(&[
        "data.train=/nonexistent/train.jsonl",
        "search.corpus=\"/nonexistent\"",
    ]);
    assert!(e.contains("/nonexistent/train.jsonl"), "{e}");
    let out = host()
        .args(["train", "--config", "configs/nope.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("configs/nope.toml"));
    let out = host()
        .args(["export", "--checkpoint"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("neither a checkpoint"),
        "{e}"
    );
}

/// Every file in configs/ is a tool manifest, a search config or a training
/// config, and loads as what it is.
#[test]
fn every_shipped_config_loads() {
    let mut trains = Vec::new();
    for entry in std::fs::read_dir(repo().join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let table: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if table.contains_key("tools") {
            Manifest::load(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        } else if table.contains_key("model") {
            let cfg = TrainConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let text = toml::to_string(&toml::Table::from_iter([(
                "search".to_string(),
                toml::Value::Table(cfg.search.clone()),
            )]))
            .unwrap();
            SearchConfig::from_toml(&text).unwrap_or_else(|e| panic!("{name} [search]: {e:#}"));
            trains.push((name, cfg));
        } else {
            assert!(
                table.contains_key("search"),
                "{name}: not a manifest, search or training config"
            );
            SearchConfig::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }
    let names: Vec<&str> = trains.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"qwen2_5_vl_7b.toml") && names.contains(&"bigram-cpu.toml"),
        "{names:?}"
    );
    let qwen = &trains
        .iter()
        .find(|(n, _)| n == "qwen2_5_vl_7b.toml")
        .unwrap()
        .1;
    // The paper's settings.
    let r = &qwen.rollout;
    assert_eq!(
        (r.max_rounds, r.max_image_searches, r.max_text_searches),
        (3, 1, 2)
    );
    assert_eq!((r.max_turn_tokens, r.max_response_tokens), (2048, 8192));
    assert!((4..=8).contains(&r.n));
    assert_eq!(
        (
            qwen.algo.kl_type.as_str(),
            qwen.algo.kl_coef,
            qwen.algo.entropy_coef
        ),
        ("low_var_kl", 0.001, 0.0)
    );
    assert_eq!((qwen.actor.lr, qwen.model.dtype.as_str()), (2e-6, "bf16"));
    assert!(qwen.actor.warmup_steps > 0 && qwen.actor.decay != mmsr_trainer::algo::Decay::Constant);
    assert!(qwen.model.freeze_vision && qwen.model.gradient_checkpointing);
    // Its search section is configs/search-remote.toml's.
    let remote: toml::Table = toml::from_str(
        &std::fs::read_to_string(repo().join("configs/search-remote.toml")).unwrap(),
    )
    .unwrap();
    assert_eq!(toml::Value::Table(qwen.search.clone()), remote["search"]);
}
