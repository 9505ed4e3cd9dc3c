//! The GRPO loop end to end on the tiny bigram policy with in-process fake
//! tools: reward rises on a task the bigram can learn, checkpoints resume
//! exactly after a real process is killed, export round-trips, TensorBoard
//! files and rollout logs read back, and bad checkpoints are refused.

use mmsr_trainer::data::Sample;
use mmsr_trainer::eval::{EvalReport, HeldOut};
use mmsr_trainer::policy::TrainablePolicy;
use mmsr_trainer::report::metrics_log;
use mmsr_trainer::reward::GoldAnswers;
use mmsr_trainer::testkit::BigramPolicy;
use mmsr_trainer::tools::{FakeSearchTools, SearchTools};
use mmsr_trainer::train::rollout_log::{ROLLOUTS_DIR, step_file};
use mmsr_trainer::train::{
    self, RunControl, StepMetrics, TrainConfig, Trainer, VAL_METRICS_FILE, VAL_RESULTS_DIR,
    ValMetrics, apply_override, val_results_file,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn png(seed: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_pixel(4, 3, image::Rgb([seed, 10, 20]))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// Every question has the answer "7": a bigram cannot read the question,
/// but it can learn which digit to put in its answer.
fn samples(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample {
            id: format!("t#{i}"),
            question: format!("What number is shown in picture {i}?"),
            images: vec![png(i as u8)],
            image_url: None,
            gold: GoldAnswers {
                ground_truth: "7".into(),
                candidates: vec![],
            },
            data_source: "test".into(),
        })
        .collect()
}

/// Answers with one of three digits: the shape of a warm-started model that
/// has the answer format but not the answer.
fn primed_policy() -> BigramPolicy {
    BigramPolicy::with_prior(
        11,
        0.0,
        &[
            "<answer>3</answer>",
            "<answer>5</answer>",
            "<answer>7</answer>",
        ],
        9.0,
    )
}

fn config(dir: &Path, extra: &[&str]) -> TrainConfig {
    let mut t = toml::Table::new();
    let base = [
        "model.kind=bigram",
        "rollout.n=8",
        "rollout.batch_prompts=4",
        "rollout.mode=sync",
        "rollout.max_turn_tokens=40",
        "rollout.max_response_tokens=80",
        "actor.lr=0.2",
        "actor.grad_clip=0",
        "actor.weight_decay=0",
        "algo.kl_coef=0.001",
        "algo.micro_batch=8",
        "algo.mini_batch=16",
        "run.progress=false",
        "data.shuffle=true",
    ];
    for o in base.iter().chain(extra) {
        apply_override(&mut t, o).unwrap();
    }
    apply_override(&mut t, &format!("run.dir={:?}", dir.display().to_string())).unwrap();
    TrainConfig::from_table(t).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn tools(latency_ms: u64) -> Arc<FakeSearchTools> {
    Arc::new(FakeSearchTools::echo(Duration::from_millis(latency_ms)))
}

fn trainer<T: SearchTools + 'static>(
    cfg: TrainConfig,
    tools: Arc<T>,
    rt: &tokio::runtime::Runtime,
    resume: bool,
) -> anyhow::Result<Trainer<BigramPolicy, T>> {
    Trainer::new(
        cfg,
        primed_policy(),
        tools,
        rt.handle().clone(),
        samples(8),
        RunControl::new(resume),
    )
}

/// `samples(n)` as a JSONL split with its image files, for `data.val`.
fn write_split(dir: &Path, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut lines = String::new();
    for (i, s) in samples(n).iter().enumerate() {
        let image = format!("v{i}.png");
        std::fs::write(dir.join(&image), &s.images[0]).unwrap();
        lines += &serde_json::json!({
            "question": s.question,
            "image": image,
            "answer": s.gold.ground_truth,
            "data_source": if i % 2 == 0 { "even" } else { "odd" },
        })
        .to_string();
        lines.push('\n');
    }
    let path = dir.join("val.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

/// A trainer with the validator its config asks for.
fn validated<T: SearchTools + 'static>(
    cfg: TrainConfig,
    tools: Arc<T>,
    rt: &tokio::runtime::Runtime,
    resume: bool,
) -> anyhow::Result<Trainer<BigramPolicy, T>> {
    let held_out = HeldOut::from_config(&cfg, tools.clone(), rt.handle().clone())?;
    let t = trainer(cfg, tools, rt, resume)?;
    Ok(match held_out {
        Some(v) => t.with_validator(Box::new(v)),
        None => t,
    })
}

fn read_vals(dir: &Path) -> Vec<ValMetrics> {
    std::fs::read_to_string(dir.join(VAL_METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The events of the run's one TensorBoard file.
fn tensorboard_events(run: &Path) -> Vec<train::tensorboard::Event> {
    let mut files = std::fs::read_dir(run.join(train::TENSORBOARD_DIR)).unwrap();
    let file = files.next().unwrap().unwrap().path();
    assert!(files.next().is_none(), "one events file");
    train::tensorboard::read_events(&file).unwrap()
}

fn read_metrics(dir: &Path) -> Vec<StepMetrics> {
    std::fs::read_to_string(dir.join(train::METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A step's rollout log, one JSON value a trajectory.
fn read_rollouts(run: &Path, step: usize) -> Vec<serde_json::Value> {
    std::fs::read_to_string(step_file(run, step))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The names in a run's subdir, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Everything but wall times.
fn without_times(mut m: StepMetrics) -> StepMetrics {
    m.time = Default::default();
    m
}

#[test]
fn reward_rises_as_the_bigram_learns_the_answer() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            "run.total_steps=12",
            "run.save_every=0",
            "run.tensorboard=true",
            "run.rollouts_every=4",
        ],
    );
    let mut t = trainer(cfg, tools(0), &rt, false).unwrap();
    let summary = t.run().unwrap();
    assert_eq!((summary.first_step, summary.last_step), (0, 12));
    let ms = read_metrics(dir.path());
    let rewards: Vec<f64> = ms.iter().map(|m| m.reward).collect();
    let acc: Vec<f64> = ms.iter().map(|m| m.accuracy).collect();
    let first: f64 = rewards[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = rewards[9..].iter().sum::<f64>() / 3.0;
    eprintln!("rewards {rewards:?}\naccuracy {acc:?}");
    assert!(
        last > first + 0.15 && last > 2.0 * first,
        "reward did not rise: {rewards:?}"
    );
    for m in &ms {
        assert_eq!((m.trajectories, m.update.optimizer_steps), (32, 2));
        assert!(
            m.update.kl.is_some()
                && m.update.entropy.unwrap() > 0.0
                && m.update.grad_norm.is_some()
        );
        assert!(m.response_length > 0.0 && m.lr == 0.2);
    }
    assert!(
        ms[11].update.kl.unwrap() > 0.0,
        "the policy moved away from the reference"
    );

    // The run dir: resolved config, final checkpoint, TensorBoard scalars.
    let resolved = std::fs::read_to_string(dir.path().join(train::CONFIG_FILE)).unwrap();
    assert!(resolved.contains("kind = \"bigram\""), "{resolved}");
    assert!(summary.checkpoint.unwrap().ends_with("step-00000012"));
    let recs = metrics_log::read(&dir.path().join(train::METRICS_FILE)).unwrap();
    assert!(metrics_log::series(&recs, &["search/image_ratio"]).is_some());
    let events = tensorboard_events(dir.path());
    assert_eq!(events.len(), 13, "file_version + one per step");
    let r12 = events[12]
        .scalars
        .iter()
        .find(|(k, _)| k == "reward")
        .unwrap()
        .1;
    assert_eq!((events[12].step, r12), (12, rewards[11] as f32));

    // Every 4th step's trajectories, scored as the step's metrics were.
    assert_eq!(
        listing(&dir.path().join(ROLLOUTS_DIR)),
        [
            "step-00000004.jsonl",
            "step-00000008.jsonl",
            "step-00000012.jsonl"
        ]
    );
    for step in [4, 8, 12] {
        let rows = read_rollouts(dir.path(), step);
        let m = &ms[step - 1];
        assert_eq!(rows.len(), 32, "step {step}");
        let mean = |key: &str| rows.iter().map(|r| r[key].as_f64().unwrap()).sum::<f64>() / 32.0;
        assert!((mean("reward") - m.reward).abs() < 1e-12, "step {step}");
        assert!((mean("accuracy") - m.accuracy).abs() < 1e-12, "step {step}");
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(
                (
                    r["step"].as_u64(),
                    r["group"].as_u64(),
                    r["rollout"].as_u64()
                ),
                (Some(step as u64), Some(i as u64 / 8), Some(i as u64 % 8))
            );
            assert_eq!(r["golds"], serde_json::json!(["7"]));
            assert!(r["sample"].as_str().unwrap().starts_with("t#"));
            assert_eq!(r["trained"], true);
            let turns = r["turns"].as_array().unwrap();
            assert!(!turns.is_empty());
            // The answer is the last turn's, and is right exactly when scored so.
            let right = r["answer"].as_str() == Some("7");
            assert_eq!(right, r["accuracy"] == 1.0, "{r}");
        }
        // Group-normalised advantages: each group's sum is 0, and a better
        // reward in a group has the larger advantage.
        for g in rows.chunks(8) {
            let sum: f64 = g.iter().map(|r| r["advantage"].as_f64().unwrap()).sum();
            assert!(sum.abs() < 1e-9, "step {step}: {sum}");
            for (a, b) in g.iter().zip(g.iter().skip(1)) {
                let (ra, rb) = (a["reward"].as_f64().unwrap(), b["reward"].as_f64().unwrap());
                let (aa, ab) = (
                    a["advantage"].as_f64().unwrap(),
                    b["advantage"].as_f64().unwrap(),
                );
                assert_eq!(ra.partial_cmp(&rb), aa.partial_cmp(&ab), "step {step}");
            }
        }
    }
}

#[test]
fn export_writes_the_trained_weights_and_bad_checkpoints_are_refused() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            "run.total_steps=2",
            "run.save_every=1",
            "run.keep_checkpoints=1",
        ],
    );
    // A checkpoint the disk cannot hold is refused before any work.
    let err = format!(
        "{:#}",
        Trainer::new(
            cfg.clone(),
            primed_policy().claiming_bytes(u64::MAX / 4),
            tools(0),
            rt.handle().clone(),
            samples(8),
            RunControl::default()
        )
        .err()
        .unwrap()
    );
    assert!(
        err.contains("a checkpoint (weights and optimizer state) needs about"),
        "{err}"
    );
    assert!(!dir.path().join(train::CONFIG_FILE).exists(), "no run dir");
    let mut t = trainer(cfg.clone(), tools(0), &rt, false).unwrap();
    t.run().unwrap();
    let trained = t.policy().trainable_parameters()[0].1.detach().copy();
    let cks: Vec<_> = std::fs::read_dir(dir.path().join(train::CHECKPOINTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(cks, vec!["step-00000002"], "keep_checkpoints = 1");

    let out = dir.path().join("export");
    let used = train::export_checkpoint(dir.path(), &out).unwrap();
    assert!(used.ends_with("step-00000002"));
    let back = BigramPolicy::load(&out).unwrap();
    assert!(back.trainable_parameters()[0].1.equal(&trained));

    // A fresh run into a dir with checkpoints must say how to continue.
    let err = trainer(cfg.clone(), tools(0), &rt, false)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    // A different config is refused, naming the key.
    let mut other = cfg.clone();
    other.rollout.n = 4;
    let err = format!("{:#}", trainer(other, tools(0), &rt, true).err().unwrap());
    assert!(err.contains("rollout.n = 8 there, 4 now"), "{err}");
    // Other data is refused.
    let err = format!(
        "{:#}",
        Trainer::new(
            cfg.clone(),
            primed_policy(),
            tools(0),
            rt.handle().clone(),
            samples(6),
            RunControl::new(true)
        )
        .err()
        .unwrap()
    );
    assert!(err.contains("other data"), "{err}");
    // A corrupt checkpoint is refused, naming the file.
    let ck = used.join(train::checkpoint::OPTIMIZER_FILE);
    let mut bytes = std::fs::read(&ck).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&ck, bytes).unwrap();
    let err = format!("{:#}", trainer(cfg, tools(0), &rt, true).err().unwrap());
    assert!(err.contains("optimizer.safetensors is corrupt"), "{err}");
    assert!(
        format!("{:#}", train::export_checkpoint(&used, &out).unwrap_err()).contains("corrupt")
    );
}

#[test]
fn validation_scores_the_policy_between_steps_and_changes_nothing() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let val = write_split(&tmp.path().join("split"), 32);
    let (with, without) = (tmp.path().join("with"), tmp.path().join("without"));
    let steps = ["run.total_steps=7", "run.save_every=0"];
    let val_keys = [
        "val.every=3",
        "val.before_train=true",
        // A character bigram decodes greedily into loops, never a closed tag.
        "val.temperature=1",
        "run.tensorboard=true",
        &format!("data.val={:?}", val.display().to_string()),
    ];
    let cfg = config(&with, &[&steps[..], &val_keys[..]].concat());

    // Asked for, validation needs a validator.
    let err = trainer(cfg.clone(), tools(0), &rt, false)
        .unwrap()
        .run()
        .unwrap_err()
        .to_string();
    assert!(err.contains("no validator"), "{err}");
    std::fs::remove_dir_all(&with).unwrap();

    validated(cfg, tools(0), &rt, false).unwrap().run().unwrap();
    let vals = read_vals(&with);
    let at: Vec<usize> = vals.iter().map(|v| v.step).collect();
    assert_eq!(
        at,
        [0, 3, 6, 7],
        "before training, every 3 steps and the last"
    );
    for v in &vals {
        assert_eq!(v.questions, 32);
        assert_eq!(v.by_source["even"].trajectories, 16);
        assert!((0.0..=1.0).contains(&v.accuracy) && v.secs > 0.0);
    }
    // Each validation's answers, as an eval report that `report` and a
    // reader of eval JSON take as they are.
    assert_eq!(
        listing(&with.join(VAL_RESULTS_DIR)),
        [0, 3, 6, 7].map(|s| format!("step-{s:08}.json"))
    );
    for v in &vals {
        let r = EvalReport::load(&val_results_file(&with, v.step)).unwrap();
        assert_eq!(r.label, format!("val-step-{}", v.step));
        assert_eq!((r.workflow.as_str(), r.results.len()), ("on-demand", 32));
        assert_eq!(r.summary.overall.mean_reward, v.reward);
        assert_eq!(r.summary.overall.accuracy_em, v.accuracy);
        assert!(r.results.iter().all(|q| !q.turns.is_empty()));
    }
    let acc: Vec<f64> = vals.iter().map(|v| v.accuracy).collect();
    eprintln!("held-out accuracy by validation: {acc:?}");
    assert!(
        acc[3] > acc[0],
        "the bigram learnt the answer on held-out questions too: {acc:?}"
    );

    // The policy was only read: the run learns step for step what it
    // learns without validation.
    let cfg = config(&without, &steps);
    validated(cfg, tools(0), &rt, false).unwrap().run().unwrap();
    assert!(!without.join(VAL_METRICS_FILE).exists());
    assert!(!without.join(VAL_RESULTS_DIR).exists());
    let a: Vec<_> = read_metrics(&with).into_iter().map(without_times).collect();
    let b: Vec<_> = read_metrics(&without)
        .into_iter()
        .map(without_times)
        .collect();
    assert_eq!(a, b);

    // TensorBoard has the validations under val/.
    let events = tensorboard_events(&with);
    let val_acc: Vec<(i64, f32)> = events
        .iter()
        .filter_map(|e| {
            let (_, v) = e.scalars.iter().find(|(k, _)| k == "val/accuracy")?;
            Some((e.step, *v))
        })
        .collect();
    let want: Vec<(i64, f32)> = vals
        .iter()
        .map(|v| (v.step as i64, v.accuracy as f32))
        .collect();
    assert_eq!(val_acc, want);

    // A validation that fails is logged and skipped; the run goes on.
    struct Broken;
    impl train::Validator<BigramPolicy> for Broken {
        fn validate(&mut self, _: &mut BigramPolicy, _: usize) -> anyhow::Result<ValMetrics> {
            anyhow::bail!("the model ran out of memory")
        }
    }
    let broken = tmp.path().join("broken");
    let cfg = config(&broken, &[&steps[..], &val_keys[..]].concat());
    let summary = trainer(cfg, tools(0), &rt, false)
        .unwrap()
        .with_validator(Box::new(Broken))
        .run()
        .unwrap();
    assert_eq!((summary.last_step, summary.failed_validations), (7, 4));
    assert_eq!(read_metrics(&broken).len(), 7);
    assert_eq!(
        std::fs::read_to_string(broken.join(VAL_METRICS_FILE)).unwrap(),
        ""
    );

    // Logs to read that cannot be written (here a file stands where their
    // dirs go) are warned about; the run and its metrics go on.
    let blocked = tmp.path().join("blocked");
    std::fs::create_dir_all(&blocked).unwrap();
    for dir in [ROLLOUTS_DIR, VAL_RESULTS_DIR] {
        std::fs::write(blocked.join(dir), "not a dir").unwrap();
    }
    let cfg = config(
        &blocked,
        &[&steps[..], &val_keys[..], &["run.rollouts_every=1"]].concat(),
    );
    let summary = validated(cfg, tools(0), &rt, false).unwrap().run().unwrap();
    assert_eq!((summary.last_step, summary.failed_validations), (7, 0));
    assert_eq!(read_metrics(&blocked).len(), 7);
    // The same run as `with`, logs or not.
    let no_secs = |d: &Path| -> Vec<ValMetrics> {
        read_vals(d)
            .into_iter()
            .map(|v| ValMetrics { secs: 0.0, ..v })
            .collect()
    };
    assert_eq!(no_secs(&blocked), no_secs(&with));
    let m: Vec<_> = read_metrics(&blocked)
        .into_iter()
        .map(without_times)
        .collect();
    assert_eq!(m, a);

    // A split that is not there is named before any work.
    let bad = config(
        &tmp.path().join("bad"),
        &["val.every=2", "data.val=\"/nonexistent/val.jsonl\""],
    );
    let err = format!(
        "{:#}",
        HeldOut::from_config(&bad, tools(0), rt.handle().clone())
            .err()
            .unwrap()
    );
    assert!(
        err.contains("data.val = \"/nonexistent/val.jsonl\""),
        "{err}"
    );
}

#[test]
fn keep_best_keeps_the_checkpoint_of_the_best_validation() {
    // Validations whose rewards rise, fall back and rise again.
    struct Scripted(Vec<f64>);
    impl train::Validator<BigramPolicy> for Scripted {
        fn validate(&mut self, _: &mut BigramPolicy, step: usize) -> anyhow::Result<ValMetrics> {
            Ok(ValMetrics {
                reward: self.0[step],
                accuracy: self.0[step] / 2.0,
                questions: 1,
                ..Default::default()
            })
        }
    }
    let rewards = vec![0.1, 0.5, 0.3, 0.5, 0.2, 0.6, 0.1, 0.4];
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let cfg = config(
        &run,
        &[
            "run.total_steps=7",
            "run.save_every=2",
            "run.keep_checkpoints=1",
            "val.every=1",
            "val.before_train=true",
            "val.keep_best=true",
            "data.val=\"unused.jsonl\"",
        ],
    );
    let mut t = trainer(cfg, tools(0), &rt, false)
        .unwrap()
        .with_validator(Box::new(Scripted(rewards.clone())));
    let summary = t.run().unwrap();
    // New bests at steps 0, 1 and 5 (0.5 again at step 3 is not better);
    // keeping one checkpoint leaves the last and the best.
    let ck = run.join(train::CHECKPOINTS_DIR);
    let steps: Vec<usize> = train::checkpoint::list(&ck)
        .unwrap()
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(steps, [5, 7]);
    let (best, dir) = train::checkpoint::best(&ck).unwrap().unwrap();
    assert_eq!((best.step, best.reward, best.accuracy), (5, 0.6, 0.3));
    assert_eq!(summary.best, Some(best));
    assert_eq!(train::resolve_best(&run).unwrap(), dir);
    assert_eq!(train::checkpoint::load(&dir).unwrap().state.step, 5);

    // Without it, only the newest is kept.
    let plain = tmp.path().join("plain");
    let cfg = config(
        &plain,
        &[
            "run.total_steps=7",
            "run.save_every=2",
            "run.keep_checkpoints=1",
            "val.every=1",
            "data.val=\"unused.jsonl\"",
        ],
    );
    let summary = trainer(cfg, tools(0), &rt, false)
        .unwrap()
        .with_validator(Box::new(Scripted(rewards)))
        .run()
        .unwrap();
    assert!(summary.best.is_none());
    let ck = plain.join(train::CHECKPOINTS_DIR);
    assert_eq!(train::checkpoint::list(&ck).unwrap().len(), 1);
    assert!(train::checkpoint::best(&ck).unwrap().is_none());
    let err = train::resolve_best(&plain).unwrap_err().to_string();
    assert!(err.contains("val.keep_best"), "{err}");
}

// ---------------------------------------------------------------------------
// Kill and resume, across real processes: this test binary re-runs itself as
// the training child.

const CHILD_DIR: &str = "MMSR_TRAIN_TEST_CHILD_DIR";
const CHILD_RESUME: &str = "MMSR_TRAIN_TEST_CHILD_RESUME";
const STEPS: usize = 8;

/// Validation and rollout logs after every step: the resumed run must keep
/// those up to the checkpoint and redo those after it. The split sits
/// beside the run dir.
fn resume_config(dir: &Path) -> TrainConfig {
    let val = dir.with_file_name("split").join("val.jsonl");
    config(
        dir,
        &[
            &format!("run.total_steps={STEPS}"),
            "run.save_every=2",
            "run.keep_checkpoints=0",
            "val.every=1",
            "val.keep_best=true",
            &format!("data.val={:?}", val.display().to_string()),
            "run.rollouts_every=1",
        ],
    )
}

/// The child's body; a no-op unless the parent started this process.
#[test]
fn child_training_run() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let rt = runtime();
    let resume = std::env::var(CHILD_RESUME).is_ok();
    // Tool latency keeps each step long enough for the parent to kill it mid-run.
    let mut t = validated(resume_config(Path::new(&dir)), tools(60), &rt, resume).unwrap();
    t.run().unwrap();
}

fn child(dir: &Path, resume: bool) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_training_run",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_DIR, dir)
    .env("MMSR_LOG", "warn");
    if resume {
        cmd.env(CHILD_RESUME, "1");
    }
    cmd
}

#[test]
fn a_killed_run_resumes_exactly() {
    let base = tempfile::tempdir().unwrap();
    let (whole, killed) = (base.path().join("whole"), base.path().join("killed"));
    write_split(&base.path().join("split"), 4);

    let status = child(&whole, false).status().unwrap();
    assert!(status.success());

    let mut proc = child(&killed, false).spawn().unwrap();
    let first = killed.join(train::CHECKPOINTS_DIR).join("step-00000002");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !first.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint appeared"
        );
        assert!(
            proc.try_wait().unwrap().is_none(),
            "the child ended before a checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    proc.kill().unwrap();
    let status = proc.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished");
    let before = read_metrics(&killed);
    assert!(
        before.len() < STEPS,
        "killed mid-run: {} steps logged",
        before.len()
    );
    // Files of steps past the checkpoint (here, from a longer run) are not
    // the resumed run's: it drops them.
    let stray = [step_file(&killed, 99), val_results_file(&killed, 99)];
    for f in &stray {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, "{}\n").unwrap();
    }

    let status = child(&killed, true).status().unwrap();
    assert!(status.success());
    let a: Vec<StepMetrics> = read_metrics(&whole)
        .into_iter()
        .map(without_times)
        .collect();
    let b: Vec<StepMetrics> = read_metrics(&killed)
        .into_iter()
        .map(without_times)
        .collect();
    assert_eq!(a.len(), STEPS);
    assert_eq!(b.len(), STEPS, "the resumed log reads as one run");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "step {}", x.step);
    }
    // The final weights agree bit for bit.
    let w = |d: &Path| {
        let ck =
            train::checkpoint::load(&d.join(train::CHECKPOINTS_DIR).join("step-00000008")).unwrap();
        ck.weights[0].1.shallow_clone()
    };
    assert!(w(&whole).equal(&w(&killed)));
    // So do the validations: those up to the checkpoint resumed from are
    // kept, and one after it is dropped and validated again.
    let vals = |d: &Path| -> Vec<ValMetrics> {
        read_vals(d)
            .into_iter()
            .map(|v| ValMetrics { secs: 0.0, ..v })
            .collect()
    };
    let (a, b) = (vals(&whole), vals(&killed));
    assert_eq!(
        a.iter().map(|v| v.step).collect::<Vec<_>>(),
        (1..=STEPS).collect::<Vec<_>>()
    );
    assert_eq!(a, b);
    // The same checkpoints (those of new best validations among them), and
    // the same best.
    let ck = |d: &Path| listing(&d.join(train::CHECKPOINTS_DIR));
    assert_eq!(ck(&whole), ck(&killed));
    let best = |d: &Path| {
        train::checkpoint::best(&d.join(train::CHECKPOINTS_DIR))
            .unwrap()
            .unwrap()
            .0
    };
    assert_eq!(best(&whole), best(&killed));
    // And the per-step files, byte for byte.
    for sub in [ROLLOUTS_DIR, VAL_RESULTS_DIR] {
        let names = listing(&whole.join(sub));
        assert_eq!(names.len(), STEPS, "{sub}");
        assert_eq!(names, listing(&killed.join(sub)), "{sub}");
        for n in &names {
            let read = |d: &Path| std::fs::read(d.join(sub).join(n)).unwrap();
            assert!(read(&whole) == read(&killed), "{sub}/{n}");
        }
    }
}
