//! SFT on the real tiny test policies: transcripts as a rollout makes them,
//! masks on exactly the scripted turns, a loss that falls and a behaviour
//! that becomes more likely, and the whole command on a small demo world.

use super::*;
use crate::data::Sample;
use crate::demo::dataset::{SEARCH_FREE_SOURCE, SEARCH_REQUIRED_SOURCE};
use crate::demo::{self, DemoDataConfig, Layout};
use crate::policy::{Policy, Segment, TrainablePolicy, Transcript};
use crate::reward::GoldAnswers;
use crate::rollout::{
    EndReason, Prompts, RolloutConfig, RolloutEngine, RolloutRequest, TurnRecord, check_transcript,
};
use crate::testkit::{BigramPolicy, ChatTokens, IM_END, ScriptedPolicy, files_under};
use crate::tools::{FakeSearchTools, FakeToolCall, ObservationPart, ToolObservation};
use crate::train::{StopPoint, StopRequest, Stopped};
use std::sync::Arc;
use std::time::Duration;

const IMG: &str = "<reason>I do not know it.</reason><search><img></search>";
const TXT: &str = "<reason>It is Vorlak.</reason><text_search> who founded Vorlak</text_search>";
const ANS: &str = "<reason>It is Vorlak.</reason><answer> Ada Brun</answer>";

fn png(w: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::new(w, 3)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn sample(q: &str) -> Sample {
    Sample {
        id: format!("t#{q}"),
        question: q.into(),
        images: vec![png(4)],
        image_url: Some(format!("http://img/{q}.png")),
        gold: GoldAnswers {
            ground_truth: "Ada Brun".into(),
            candidates: vec![],
        },
        data_source: SEARCH_REQUIRED_SOURCE.into(),
    }
}

fn tools() -> Arc<FakeSearchTools> {
    Arc::new(FakeSearchTools::new(Duration::ZERO, |call| match call {
        FakeToolCall::Image { .. } => ToolObservation {
            parts: vec![
                ObservationPart::Text("1. Vorlak - Atlas ".into()),
                ObservationPart::Image(png(3)),
            ],
            error: None,
        },
        FakeToolCall::Text(q) => ToolObservation::text(format!("{q}: founded by Ada Brun.")),
    }))
}

fn failing_tools() -> Arc<FakeSearchTools> {
    Arc::new(FakeSearchTools::new(Duration::ZERO, |_| ToolObservation {
        parts: vec![ObservationPart::Text("Search error: 503.".into())],
        error: Some("503".into()),
    }))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn opts() -> BuildOptions {
    BuildOptions {
        max_rounds: 3,
        search_concurrency: 4,
        tool_timeout: Duration::from_secs(5),
        chunk: 2,
        drop_failed_searches: true,
        drop_ungrounded: false,
        direct_prompt: false,
        stop: StopRequest::default(),
    }
}

/// Scripts by sample id; results are grounded unless they say "nothing".
struct Fixed(Vec<(String, Vec<String>)>);

impl TrajectorySource for Fixed {
    fn turns(&self, sample: &Sample) -> anyhow::Result<Vec<String>> {
        self.0
            .iter()
            .find(|(id, _)| *id == sample.id)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| anyhow::anyhow!("no script for {}", sample.id))
    }
    fn grounded(&self, _: &Sample, _: usize, obs: &ToolObservation) -> bool {
        !obs.text_content().contains("nothing")
    }
}

fn build<P: Policy>(
    policy: &mut P,
    samples: &[Sample],
    scripts: &[Vec<String>],
    tools: &Arc<FakeSearchTools>,
    opts: &BuildOptions,
) -> anyhow::Result<SftData> {
    let rt = runtime();
    let source = Fixed(
        samples
            .iter()
            .map(|s| s.id.clone())
            .zip(scripts.iter().cloned())
            .collect(),
    );
    build_transcripts(
        policy,
        samples,
        &source,
        &Arc::new(Prompts::builtin()),
        tools,
        rt.handle(),
        opts,
        &|_| {},
    )
}

fn turns(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The forced turns as the records a generating policy would leave: the
/// text's tokens and `<|im_end|>`, log-prob 0.
fn forced_records(script: &[String]) -> Vec<TurnRecord> {
    script
        .iter()
        .map(|t| {
            let mut ids = ChatTokens::text(t);
            ids.push(IM_END);
            TurnRecord {
                text: t.clone(),
                logprobs: vec![0.0; ids.len()],
                token_ids: ids,
                finish: crate::policy::FinishReason::Stop,
                action: None,
            }
        })
        .collect()
}

#[test]
fn transcripts_are_what_a_rollout_makes_with_masks_on_the_scripted_turns_only() {
    let samples = [sample("q1"), sample("q2"), sample("q3")];
    let scripts = [turns(&[IMG, TXT, ANS]), turns(&[ANS]), turns(&[IMG, ANS])];
    let tools = tools();
    let mut policy = BigramPolicy::new(1, 0.0);
    let data = build(&mut policy, &samples, &scripts, &tools, &opts()).unwrap();
    assert_eq!(data.transcripts.len(), 3);
    assert_eq!(data.sample_index, vec![0, 1, 2]);
    assert_eq!(
        (
            data.stats.direct,
            data.stats.with_search,
            data.stats.image_searches,
            data.stats.text_searches
        ),
        (1, 2, 2, 1)
    );
    let mut calls = tools.calls();
    calls.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(calls.len(), 3);
    assert!(
        calls.contains(&FakeToolCall::Text("who founded Vorlak".into())),
        "{calls:?}"
    );

    for (t, script) in data.transcripts.iter().zip(&scripts) {
        // Mask 1 on exactly each scripted turn and its <|im_end|>; 0 on the
        // prompt, the search results and the template's framing.
        check_transcript(t, &forced_records(script)).unwrap();
        assert_eq!(
            t.response_len(),
            script.iter().map(|s| s.chars().count() + 1).sum::<usize>()
        );
        let searches = script.len() - 1;
        let shown = ChatTokens::decode(&t.tokens);
        assert_eq!(shown.matches("<information>").count(), searches, "{shown}");
        assert_eq!(t.images.len(), 1 + usize::from(script[0] == IMG));
    }

    // The same conversations, played by a rollout: identical tokens and masks.
    let rt = runtime();
    let engine = RolloutEngine::new(
        RolloutConfig {
            mode: crate::rollout::RolloutMode::Sync,
            ..Default::default()
        },
        Arc::new(Prompts::builtin()),
        self::tools(),
        rt.handle().clone(),
    );
    let by_question = scripts.clone();
    let mut scripted = ScriptedPolicy::new(move |first: &str| {
        let k = ["q1", "q2", "q3"]
            .iter()
            .position(|q| first.ends_with(&format!("Question: {q}")))
            .unwrap();
        by_question[k].clone()
    });
    let requests: Vec<RolloutRequest> = samples
        .iter()
        .map(|s| RolloutRequest {
            id: s.id.clone(),
            question: s.question.clone(),
            image: s.images[0].clone(),
            image_url: s.image_url.clone(),
        })
        .collect();
    let (trajs, _) = engine.run(&mut scripted, &requests, 0).unwrap();
    for (traj, built) in trajs.iter().zip(&data.transcripts) {
        assert_eq!(traj.end, EndReason::Answered);
        assert_eq!(traj.transcript.tokens, built.tokens);
        assert_eq!(traj.transcript.response_mask, built.response_mask);
        assert_eq!(traj.transcript.images, built.images);
    }
}

#[test]
fn failed_searches_are_dropped_and_counted() {
    let samples = [sample("q1"), sample("q2")];
    let scripts = [turns(&[IMG, ANS]), turns(&[ANS])];
    let mut policy = BigramPolicy::new(1, 0.0);
    let data = build(&mut policy, &samples, &scripts, &failing_tools(), &opts()).unwrap();
    assert_eq!((data.stats.dropped, data.stats.tool_errors), (1, 1));
    assert_eq!(data.sample_index, vec![1]);
    let keep = BuildOptions {
        drop_failed_searches: false,
        ..opts()
    };
    let data = build(&mut policy, &samples, &scripts, &failing_tools(), &keep).unwrap();
    assert_eq!((data.stats.dropped, data.transcripts.len()), (0, 2));
    let err = build(
        &mut policy,
        &samples[..1],
        &scripts[..1],
        &failing_tools(),
        &opts(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("no SFT trajectory left"), "{err}");
}

#[test]
fn bad_scripts_are_named() {
    let mut policy = BigramPolicy::new(1, 0.0);
    let s = [sample("q9")];
    let err = |script: &[&str]| {
        format!(
            "{:#}",
            build(
                &mut BigramPolicy::new(1, 0.0),
                &s,
                &[turns(script)],
                &tools(),
                &opts()
            )
            .err()
            .unwrap()
        )
    };
    assert!(err(&[ANS, ANS]).contains("t#q9: scripted turn 0"));
    assert!(err(&[IMG]).contains("scripted turn 0"));
    assert!(err(&[IMG, TXT, TXT, ANS]).contains("more than rollout.max_rounds = 3"));
    assert!(err(&[]).contains("empty script"));
    let _ = build(&mut policy, &s, &[turns(&[ANS])], &tools(), &opts()).unwrap();
}

/// Σ log p of the mask-1 tokens of `turn` forced after a fresh first turn.
fn turn_logprob(policy: &mut BigramPolicy, question: &str, turn: &str) -> f64 {
    let mut s = policy
        .open(&[
            Segment::Image(png(4)),
            Segment::Text(Prompts::builtin().first_turn(question, 3).unwrap()),
        ])
        .unwrap();
    policy.push_assistant(&mut s, turn).unwrap();
    let t = policy.transcript(&s).clone();
    let n = t.response_len() as f64;
    -mean_nll(policy, &[&t]).unwrap() * n
}

fn fit_opts(steps: usize) -> FitOptions {
    FitOptions {
        total_steps: steps,
        epochs: 1,
        batch_size: 4,
        micro_batch: 2,
        seed: 3,
        shuffle: true,
        lr: 0.05,
        warmup_steps: 2,
        decay: crate::algo::Decay::Cosine,
        min_lr_ratio: 0.1,
        adamw: crate::algo::AdamWConfig {
            weight_decay: 0.0,
            ..Default::default()
        },
        grad_clip: 1.0,
        confidence_penalty: 0.0,
        data_parallel: 1,
    }
}

#[test]
fn sft_lowers_the_loss_and_makes_the_trained_behaviour_more_likely() {
    // Direct answers only: afterwards answering must be more likely than
    // searching, on questions the data never had.
    let train: Vec<Sample> = (0..8).map(|i| sample(&format!("train {i}"))).collect();
    let scripts: Vec<Vec<String>> = train.iter().map(|_| turns(&[ANS])).collect();
    let held: Vec<Sample> = (0..4).map(|i| sample(&format!("held {i}"))).collect();
    let held_scripts: Vec<Vec<String>> = held.iter().map(|_| turns(&[ANS])).collect();
    let mut policy = BigramPolicy::new(7, 0.0);
    let data = build(&mut policy, &train, &scripts, &tools(), &opts()).unwrap();
    let held = build(&mut policy, &held, &held_scripts, &tools(), &opts()).unwrap();
    let held_refs: Vec<&Transcript> = held.transcripts.iter().collect();
    let before = mean_nll(&mut policy, &held_refs).unwrap();
    let gap = |p: &mut BigramPolicy| turn_logprob(p, "new?", ANS) - turn_logprob(p, "new?", IMG);
    let gap_before = gap(&mut policy);

    let tmp = tempfile::tempdir().unwrap();
    let metrics = tmp.path().join("metrics.jsonl");
    let mut seen = 0;
    let history = fit(
        &mut policy,
        &data.transcripts,
        &fit_opts(60),
        Some(&metrics),
        None,
        &mut |_, _| seen += 1,
    )
    .unwrap();
    assert_eq!((history.len(), seen), (60, 60));
    let after = mean_nll(&mut policy, &held_refs).unwrap();
    let first = history[0].loss;
    let last = history[history.len() - 5..]
        .iter()
        .map(|m| m.loss)
        .sum::<f64>()
        / 5.0;
    assert!(
        (first - before).abs() < 0.5,
        "the first step's loss is the NLL before training: {first} vs {before}"
    );
    assert!(last < 0.5 * first, "training loss {first:.3} → {last:.3}");
    assert!(
        after < 0.5 * before,
        "held-out NLL {before:.3} → {after:.3}"
    );
    let gap_after = gap(&mut policy);
    assert!(
        gap_after > 0.0 && gap_after - gap_before > 5.0,
        "log p(answer) − log p(search): {gap_before:.2} → {gap_after:.2}"
    );
    // The schedule warmed up and decayed; the log is what the report reads.
    assert!(history[0].lr < history[2].lr && history[59].lr < history[2].lr);
    let records = crate::report::metrics_log::read(&metrics).unwrap();
    assert_eq!(records.len(), 60);
    let (name, points) =
        crate::report::metrics_log::series(&records, &["loss", "sft/loss"]).unwrap();
    assert_eq!((name.as_str(), points.len()), ("sft/loss", 60));
    assert!((points[0].1 - first).abs() < 1e-9);
    assert!(!crate::report::plots::training_panels(&records).is_empty());
}

#[test]
fn a_confidence_penalty_keeps_the_policy_less_sure_and_still_fits() {
    let train: Vec<Sample> = (0..8).map(|i| sample(&format!("c {i}"))).collect();
    let scripts: Vec<Vec<String>> = (0..8)
        .map(|i| {
            if i % 2 == 0 {
                turns(&[ANS])
            } else {
                turns(&[IMG, ANS])
            }
        })
        .collect();
    let run = |beta: f64| {
        let mut p = BigramPolicy::new(7, 0.0);
        let data = build(&mut p, &train, &scripts, &tools(), &opts()).unwrap();
        let o = FitOptions {
            confidence_penalty: beta,
            ..fit_opts(60)
        };
        let h = fit(&mut p, &data.transcripts, &o, None, None, &mut |_, _| {}).unwrap();
        let refs: Vec<&Transcript> = data.transcripts.iter().collect();
        let entropy = mean_entropy(&mut p, &refs).unwrap();
        (h, entropy)
    };
    let (plain, h_plain) = run(0.0);
    let (penalised, h_pen) = run(0.5);
    assert!(plain.iter().all(|m| m.entropy.is_none()));
    let logged = penalised.last().unwrap().entropy.unwrap();
    assert!(
        logged > 0.0,
        "the step logs the entropy it penalised: {logged}"
    );
    assert!(
        h_pen > h_plain + 0.1,
        "entropy after SFT: {h_plain:.3} plain vs {h_pen:.3} with the penalty"
    );
    let (first, last) = (penalised[0].loss, penalised[59].loss);
    assert!(
        last < 0.7 * first,
        "NLL still falls: {first:.3} → {last:.3}"
    );
}

#[test]
fn micro_batches_add_up_to_the_same_update() {
    let train: Vec<Sample> = (0..4).map(|i| sample(&format!("m {i}"))).collect();
    let scripts: Vec<Vec<String>> = vec![
        turns(&[ANS]),
        turns(&[IMG, ANS]),
        turns(&[IMG, TXT, ANS]),
        turns(&[ANS]),
    ];
    let weights = |micro: usize| {
        let mut p = BigramPolicy::new(5, 0.0);
        let data = build(&mut p, &train, &scripts, &tools(), &opts()).unwrap();
        let o = FitOptions {
            micro_batch: micro,
            ..fit_opts(3)
        };
        let h = fit(&mut p, &data.transcripts, &o, None, None, &mut |_, _| {}).unwrap();
        (p.trainable_parameters()[0].1.detach().copy(), h[0].loss)
    };
    let (a, la) = weights(4);
    let (b, lb) = weights(1);
    assert!((la - lb).abs() < 1e-5, "{la} vs {lb}");
    assert!(
        a.allclose(&b, 1e-5, 1e-6, false),
        "gradient accumulation differs"
    );
}

#[test]
fn data_parallel_threads_give_the_same_update_bit_for_bit() {
    let train: Vec<Sample> = (0..6).map(|i| sample(&format!("d {i}"))).collect();
    let scripts: Vec<Vec<String>> = vec![
        turns(&[ANS]),
        turns(&[IMG, ANS]),
        turns(&[IMG, TXT, ANS]),
        turns(&[ANS]),
        turns(&[TXT, ANS]),
        turns(&[IMG, TXT, ANS]),
    ];
    let run = |threads: usize, beta: f64| {
        let mut p = BigramPolicy::new(5, 0.0);
        let data = build(&mut p, &train, &scripts, &tools(), &opts()).unwrap();
        let o = FitOptions {
            micro_batch: 1,
            batch_size: 5,
            data_parallel: threads,
            confidence_penalty: beta,
            ..fit_opts(4)
        };
        let h = fit(&mut p, &data.transcripts, &o, None, None, &mut |_, _| {}).unwrap();
        let losses: Vec<(f64, Option<f64>, f64)> =
            h.iter().map(|m| (m.loss, m.entropy, m.grad_norm)).collect();
        (p.trainable_parameters()[0].1.detach().copy(), losses)
    };
    for beta in [0.0, 0.1] {
        let (one, one_h) = run(1, beta);
        for threads in [2, 3] {
            let (many, many_h) = run(threads, beta);
            assert_eq!(
                one_h, many_h,
                "{threads} threads, beta {beta}: step metrics"
            );
            assert!(
                one.equal(&many),
                "{threads} threads, beta {beta}: weights differ by {}",
                (&one - &many).abs().max().double_value(&[])
            );
        }
    }
    // It did train: the weights moved.
    let start = BigramPolicy::new(5, 0.0).trainable_parameters()[0]
        .1
        .detach()
        .copy();
    assert!(!run(2, 0.0).0.equal(&start));
}

fn small_world() -> DemoDataConfig {
    let mut c = DemoDataConfig {
        vocab_size: 600,
        ..DemoDataConfig::default()
    };
    (
        c.world.known,
        c.world.unknown_train,
        c.world.unknown_test,
        c.world.decoys,
    ) = (3, 6, 3, 3);
    c
}

/// The `sft` config of a run into `run_dir` on the small world in
/// `world_dir`, with `extra` TOML lines under `[run]`.
fn small_run_config(world_dir: &Path, run_dir: &Path, extra: &str) -> (TrainConfig, SftSection) {
    let layout = Layout::new(world_dir);
    let table: toml::Table = toml::from_str(&format!(
        r#"
[run]
dir = {run:?}
seed = 1
epochs = 2
progress = false
{extra}
[model]
path = "unused-by-the-bigram"
[data]
train = {train:?}
shuffle = true
max_samples = 10
[actor]
lr = 0.05
[sft]
world = {world:?}
batch_size = 4
micro_batch = 2
"#,
        run = run_dir.display().to_string(),
        train = layout.data(demo::world::Split::Train).display().to_string(),
        world = layout.world().display().to_string(),
    ))
    .unwrap();
    crate::eval::config::command_config_from_table(table, &[], "sft").unwrap()
}

#[test]
fn run_sft_on_a_small_demo_world() {
    let tmp = tempfile::tempdir().unwrap();
    let world_dir = tmp.path().join("world");
    let summary = demo::generate(&world_dir, &small_world(), &[]).unwrap();
    let layout = Layout::new(&world_dir);
    let run_dir = tmp.path().join("run");
    let (base, sft) = small_run_config(&world_dir, &run_dir, "");
    let source = DemoScripts::load(&layout.world()).unwrap();
    let rt = runtime();
    // A model the disk cannot hold is refused before any work.
    let mut too_big = BigramPolicy::new(2, 0.0).claiming_bytes(u64::MAX / 4);
    let err = format!(
        "{:#}",
        run_sft(
            &base,
            &sft,
            &mut too_big,
            &source,
            tools(),
            rt.handle(),
            RunControl::default()
        )
        .unwrap_err()
    );
    assert!(
        err.contains("the SFT model's export plus a checkpoint needs about"),
        "{err}"
    );
    assert!(!run_dir.exists(), "no work, no run dir");
    let mut policy = BigramPolicy::new(2, 0.0);
    let out = run_sft(
        &base,
        &sft,
        &mut policy,
        &source,
        tools(),
        rt.handle(),
        RunControl::default(),
    )
    .unwrap();
    assert_eq!(out.data.samples, 10, "data.max_samples is the budget");
    assert_eq!(out.data.direct + out.data.with_search, 10);
    assert!(
        out.data.direct > 0 && out.data.with_search > 0,
        "{:?}",
        out.data
    );
    assert_eq!(out.steps, 5, "2 epochs of 10 in batches of 4");
    assert!(
        out.last_loss < out.first_loss,
        "{} → {}",
        out.first_loss,
        out.last_loss
    );
    for f in [
        "metrics.jsonl",
        SUMMARY_FILE,
        CONFIG_FILE,
        "model/config.json",
        "model/model.safetensors",
    ] {
        assert!(run_dir.join(f).is_file(), "{f}");
    }
    let resolved = std::fs::read_to_string(run_dir.join(CONFIG_FILE)).unwrap();
    let again: toml::Table = toml::from_str(&resolved).unwrap();
    let (b2, s2): (_, SftSection) =
        crate::eval::config::command_config_from_table(again, &[], "sft").unwrap();
    assert_eq!(
        (b2, s2),
        (base.clone(), sft.clone()),
        "the resolved config reads back"
    );
    assert!(summary.train_search_free > 0);

    // The budget takes the same samples for the same seed, others for another.
    let ids = |seed: u64| {
        let mut b = base.clone();
        b.run.seed = seed;
        budget_samples(&b)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(1), ids(1));
    assert_ne!(ids(1), ids(2));
}

#[test]
fn demo_scripts_follow_the_data_source_and_name_bad_samples() {
    let tmp = tempfile::tempdir().unwrap();
    demo::generate(tmp.path(), &small_world(), &[]).unwrap();
    let layout = Layout::new(tmp.path());
    let source = DemoScripts::load(&layout.world()).unwrap();
    let samples = crate::data::load(&layout.data(demo::world::Split::Train), &Default::default())
        .unwrap()
        .samples;
    for s in &samples {
        let t = source.turns(s).unwrap();
        let free = s.data_source == SEARCH_FREE_SOURCE;
        assert_eq!(t.len() == 1, free, "{}: {t:?}", s.id);
        assert!(
            t.last()
                .unwrap()
                .ends_with(&format!("<answer> {}</answer>", s.gold.ground_truth))
        );
    }
    let mut s = samples[0].clone();
    s.data_source = "elsewhere".into();
    assert!(
        source
            .turns(&s)
            .unwrap_err()
            .to_string()
            .contains("neither search_free nor search_required")
    );
    let mut s = samples[0].clone();
    s.image_url = Some("http://x/queries/nope.jpg".into());
    assert!(
        source
            .turns(&s)
            .unwrap_err()
            .to_string()
            .contains("\"nope\"")
    );
    let mut s = samples[0].clone();
    s.question = "Something else?".into();
    assert!(
        source
            .turns(&s)
            .unwrap_err()
            .to_string()
            .contains("different runs")
    );
    let mut s = samples[0].clone();
    s.image_url = None;
    assert!(
        source
            .turns(&s)
            .unwrap_err()
            .to_string()
            .contains("no image URL")
    );
    // Grounded: the image results name the town, the text results hold the answer.
    let world: crate::demo::world::World =
        serde_json::from_slice(&std::fs::read(layout.world()).unwrap()).unwrap();
    let s = samples
        .iter()
        .find(|s| source.turns(s).unwrap().len() == 3)
        .unwrap();
    let id = std::path::Path::new(s.image_url.as_deref().unwrap())
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap();
    let q = world.questions.iter().find(|q| q.id == id).unwrap();
    let town = &world.towns[q.town].name;
    let says = |t: &str| ToolObservation::text(t);
    assert!(source.grounded(s, 0, &says(&format!("1. {town} - Atlas"))));
    assert!(!source.grounded(s, 0, &says("No image search results were found.")));
    assert!(source.grounded(s, 1, &says(&format!("… {} …", q.answer))));
    assert!(!source.grounded(s, 1, &says("Text search results: none.")));
    let err = DemoScripts::load(&tmp.path().join("summary.json"))
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("not a demo world.json"),
        "{err:#}"
    );
}

#[test]
fn context_mask_covers_every_predictable_token_but_image_placeholders() {
    let t = Transcript {
        tokens: vec![5, 7, 99, 99, 8, 9, 10],
        response_mask: vec![0, 0, 0, 0, 0, 1, 1],
        sample_logprobs: vec![0.0; 7],
        images: vec![],
    };
    let c = with_context_mask(&t, &[99]);
    // Position 0 has nothing to predict it; 99 stands for an image.
    assert_eq!(c.response_mask, vec![0, 1, 0, 0, 1, 1, 1]);
    assert_eq!(c.tokens, t.tokens);
    assert_eq!(c.response_len(), 4);
}

#[test]
fn turn_openings_get_their_weight_and_the_rest_keeps_its_mask() {
    let t = Transcript {
        tokens: vec![5, 7, 8, 9, 10, 11, 12, 13, 14],
        // Two assistant turns: 2..=4 and 7..=8.
        response_mask: vec![0, 0, 1, 1, 1, 0, 0, 1, 1],
        sample_logprobs: vec![0.0; 9],
        images: vec![],
    };
    let weighted = |base: &Transcript, w| {
        let mut out = base.clone();
        weight_turn_openings(&mut out.response_mask, &t.response_mask, w);
        out
    };
    let w = weighted(&t, 4);
    assert_eq!(w.response_mask, vec![0, 0, 4, 4, 1, 0, 0, 4, 4]);
    assert_eq!(w.response_len(), 5, "a weight counts as one token");
    // On a widened mask the context keeps weight 1.
    let c = with_context_mask(&t, &[]);
    let w = weighted(&c, 3);
    assert_eq!(w.response_mask, vec![0, 1, 3, 3, 1, 1, 1, 3, 3]);
    // Weight 1 changes nothing.
    let same = weighted(&c, 1);
    assert_eq!(same.response_mask, c.response_mask);
}

#[test]
fn direct_prompt_copies_open_with_the_direct_workflows_turn() {
    let samples = [sample("q1")];
    let mut policy = BigramPolicy::new(1, 0.0);
    let direct = BuildOptions {
        direct_prompt: true,
        ..opts()
    };
    let plain = build(&mut policy, &samples, &[turns(&[ANS])], &tools(), &opts()).unwrap();
    let forced = build(&mut policy, &samples, &[turns(&[ANS])], &tools(), &direct).unwrap();
    // The bigram policy's tokens below 128 are ASCII.
    let text = |t: &Transcript| -> String {
        t.tokens
            .iter()
            .filter(|&&c| c < 128)
            .map(|&c| c as u8 as char)
            .collect()
    };
    let prompts = Prompts::builtin();
    let want = prompts.direct_first_turn("q1").unwrap();
    let (p, f) = (&plain.transcripts[0], &forced.transcripts[0]);
    assert!(text(f).contains(want.trim()), "{}", text(f));
    assert!(!text(p).contains(want.trim()), "{}", text(p));
    // The same answer turn is what is learnt.
    assert_eq!(p.response_len(), f.response_len());
    // A search under a prompt that forbids it is a broken script.
    let err = build(
        &mut policy,
        &samples,
        &[turns(&[IMG, ANS])],
        &tools(),
        &direct,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("allows no search"), "{err}");
}

#[test]
fn known_views_are_new_photos_of_search_free_training_questions() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = demo::generate(tmp.path(), &small_world(), &[]).unwrap();
    let layout = Layout::new(tmp.path());
    let source = DemoScripts::load(&layout.world()).unwrap();
    let opts = Default::default();
    let train = crate::data::load(&layout.data(demo::world::Split::Train), &opts)
        .unwrap()
        .samples;
    let views = crate::data::load(&layout.known_views(), &opts)
        .unwrap()
        .samples;
    let per_question = small_world().world.known_views;
    assert!(per_question > 0);
    assert_eq!(views.len(), summary.train_search_free * per_question);
    assert_eq!(summary.known_views, views.len());
    let mut photos: std::collections::HashSet<&[u8]> =
        train.iter().map(|s| s.images[0].as_slice()).collect();
    for v in &views {
        assert_eq!(v.data_source, SEARCH_FREE_SOURCE, "{}", v.id);
        // The script of the question it shows: one direct answer.
        let base_id = v.image_url.as_deref().unwrap().rsplit('/').next().unwrap();
        let base_id = base_id.split(demo::VIEW_SEP).next().unwrap();
        let base = train
            .iter()
            .find(|s| {
                s.image_url
                    .as_deref()
                    .unwrap()
                    .ends_with(&format!("/{base_id}.jpg"))
            })
            .unwrap_or_else(|| panic!("{}: no training question {base_id}", v.id));
        assert_eq!(
            (&v.question, &v.gold.ground_truth),
            (&base.question, &base.gold.ground_truth)
        );
        assert_eq!(source.turns(v).unwrap(), source.turns(base).unwrap());
        assert!(photos.insert(&v.images[0]), "{}: a photo seen before", v.id);
    }
}

#[test]
fn sft_resumes_from_its_checkpoint_as_if_never_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let world_dir = tmp.path().join("world");
    demo::generate(&world_dir, &small_world(), &[]).unwrap();
    let source = DemoScripts::load(&Layout::new(&world_dir).world()).unwrap();
    let rt = runtime();
    let go = |cfg: &(TrainConfig, SftSection), p: &mut BigramPolicy, t, resume| {
        run_sft(
            &cfg.0,
            &cfg.1,
            p,
            &source,
            t,
            rt.handle(),
            RunControl::new(resume),
        )
    };
    let every = "save_every = 2\nkeep_checkpoints = 0";
    let whole = tmp.path().join("whole");
    let whole_cfg = small_run_config(&world_dir, &whole, every);
    let mut policy = BigramPolicy::new(2, 0.0);
    let done = go(&whole_cfg, &mut policy, tools(), false).unwrap();
    assert_eq!(done.steps, 5);
    let ck = whole.join(CHECKPOINTS_DIR);
    let saved: Vec<usize> = checkpoint::list(&ck).unwrap().iter().map(|c| c.0).collect();
    assert_eq!(saved, vec![2, 4]);
    assert!(whole.join(data_file::DATA_FILE).is_file());

    // The same run stopped after step 3 (one step past its checkpoint at
    // 2, half a line into step 4's), as a killed process leaves it.
    let cut = tmp.path().join("cut");
    std::fs::create_dir_all(cut.join(CHECKPOINTS_DIR)).unwrap();
    for f in [CONFIG_FILE, data_file::DATA_FILE] {
        std::fs::copy(whole.join(f), cut.join(f)).unwrap();
    }
    let two = checkpoint::dir_name(2);
    for (name, bytes) in files_under(&ck.join(&two)) {
        let to = cut.join(CHECKPOINTS_DIR).join(&two).join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    let log = std::fs::read_to_string(whole.join("metrics.jsonl")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 5);
    std::fs::write(
        cut.join("metrics.jsonl"),
        format!(
            "{}\n{}\n{}\n{{\"step\": 3, \"sf",
            lines[0], lines[1], lines[2]
        ),
    )
    .unwrap();
    let cut_cfg = small_run_config(&world_dir, &cut, every);
    let err = |r: Result<SftSummary>| format!("{:#}", r.unwrap_err());

    // Not without --resume; not under a config that computes otherwise.
    let mut fresh = BigramPolicy::new(2, 0.0);
    let msg = err(go(&cut_cfg, &mut fresh, tools(), false));
    assert!(msg.contains("pass --resume"), "{msg}");
    let mut other = cut_cfg.clone();
    other.0.actor.lr = 0.01;
    let msg = err(go(&other, &mut fresh, tools(), true));
    assert!(msg.contains("actor.lr = 0.05 there, 0.01 now"), "{msg}");
    // The resume needs no tools: the train set comes from the run dir.
    let resumed = go(&cut_cfg, &mut fresh, failing_tools(), true).unwrap();
    assert_eq!(resumed.data, done.data);
    assert_eq!((resumed.resumed_at, done.resumed_at), (Some(2), None));
    assert_eq!(
        (resumed.steps, resumed.first_loss, resumed.last_loss),
        (done.steps, done.first_loss, done.last_loss)
    );
    assert_eq!(
        std::fs::read_to_string(cut.join("metrics.jsonl")).unwrap(),
        log,
        "the resumed log reads as the uninterrupted one"
    );
    assert_eq!(
        files_under(&cut.join("model")),
        files_under(&whole.join("model"))
    );
    let (a, b) = (
        &policy.trainable_parameters()[0].1,
        &fresh.trainable_parameters()[0].1,
    );
    assert!(a.equal(b), "the same weights at the end");

    // A finished run is not resumed, and a damaged train set is named.
    let msg = err(go(&whole_cfg, &mut fresh, tools(), true));
    assert!(msg.contains("already holds a finished SFT run"), "{msg}");
    std::fs::remove_file(cut.join(SUMMARY_FILE)).unwrap();
    std::fs::remove_dir_all(cut.join("model")).unwrap();
    std::fs::write(cut.join(data_file::DATA_FILE), b"{}").unwrap();
    let msg = err(go(&cut_cfg, &mut fresh, tools(), true));
    assert!(
        msg.contains("sft_data.safetensors is not a whole SFT data file"),
        "{msg}"
    );
}

#[test]
fn a_stopped_fit_checkpoints_the_step_it_reached_and_resumes_as_if_never_stopped() {
    let train: Vec<Sample> = (0..8).map(|i| sample(&format!("s {i}"))).collect();
    let scripts: Vec<Vec<String>> = (0..8)
        .map(|i| match i % 2 {
            0 => turns(&[ANS]),
            _ => turns(&[IMG, ANS]),
        })
        .collect();
    let data = build(
        &mut BigramPolicy::new(7, 0.0),
        &train,
        &scripts,
        &tools(),
        &opts(),
    )
    .unwrap()
    .transcripts;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = TrainConfig::default();
    let checkpoints = |root: &str, resume, stop: &StopRequest| FitCheckpoints {
        root: tmp.path().join(root),
        every: 4,
        keep: 0,
        config: &cfg,
        data: "eight questions".into(),
        resume,
        stop: stop.clone(),
    };
    let never = StopRequest::default();
    let mut whole = BigramPolicy::new(7, 0.0);
    let o = fit_opts(8);
    let all = fit(
        &mut whole,
        &data,
        &o,
        None,
        Some(checkpoints("whole", None, &never)),
        &mut |_, _| {},
    )
    .unwrap();

    // Requested during step 3 (0-based 2): steps 1–3 run, then a checkpoint
    // at 3, off the every-4 schedule.
    let stop = StopRequest::default();
    let mut cut = BigramPolicy::new(7, 0.0);
    let mut ran = Vec::new();
    let err = fit(
        &mut cut,
        &data,
        &o,
        None,
        Some(checkpoints("cut", None, &stop)),
        &mut |step, m| {
            ran.push(m.loss);
            if step == 2 {
                stop.request();
            }
        },
    )
    .unwrap_err();
    let stopped = err.downcast_ref::<Stopped>().expect("a Stopped error");
    let at = tmp.path().join("cut").join(checkpoint::dir_name(3));
    assert_eq!(
        (stopped.at, stopped.checkpoint.as_ref()),
        (StopPoint::Step { step: 3, total: 8 }, Some(&at))
    );
    assert_eq!(ran.len(), 3);
    let saved: Vec<usize> = checkpoint::list(&tmp.path().join("cut"))
        .unwrap()
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(saved, vec![3]);

    // A stop already requested when the resume starts: no step, no new
    // checkpoint, the one it resumed named.
    let mut resumed = BigramPolicy::new(7, 0.0);
    let resume = |policy: &mut BigramPolicy, stop: &StopRequest| {
        let from = Some(checkpoint::load(&at).unwrap());
        let c = checkpoints("cut", from, stop);
        fit(policy, &data, &o, None, Some(c), &mut |_, _| {
            assert!(!stop.is_requested(), "no step after a stop")
        })
    };
    let err = resume(&mut resumed, &stop).unwrap_err();
    let again = err.downcast_ref::<Stopped>().unwrap();
    assert_eq!(
        (again.at, again.checkpoint.as_ref()),
        (StopPoint::Step { step: 3, total: 8 }, Some(&at))
    );

    let rest = resume(&mut resumed, &never).unwrap();
    let losses: Vec<f64> = ran
        .iter()
        .copied()
        .chain(rest.iter().map(|m| m.loss))
        .collect();
    assert_eq!(losses, all.iter().map(|m| m.loss).collect::<Vec<_>>());
    let (a, b) = (
        &whole.trainable_parameters()[0].1,
        &resumed.trainable_parameters()[0].1,
    );
    assert!(a.equal(b), "the same weights at the end");
}

#[test]
fn a_stop_during_the_build_ends_it_between_chunks() {
    let samples: Vec<Sample> = (0..6).map(|i| sample(&format!("b {i}"))).collect();
    let source = Fixed(
        samples
            .iter()
            .map(|s| (s.id.clone(), turns(&[IMG, ANS])))
            .collect(),
    );
    let o = opts();
    let searched = std::sync::atomic::AtomicUsize::new(0);
    let rt = runtime();
    let Err(err) = build_transcripts(
        &mut BigramPolicy::new(1, 0.0),
        &samples,
        &source,
        &Arc::new(Prompts::builtin()),
        &tools(),
        rt.handle(),
        &o,
        // Requested once the first chunk of two is through.
        &|n| {
            searched.store(n, std::sync::atomic::Ordering::SeqCst);
            o.stop.request();
        },
    ) else {
        panic!("the build ran to its end");
    };
    let stopped = err.downcast_ref::<Stopped>().expect("a Stopped error");
    assert_eq!(stopped.at, StopPoint::Building { done: 2, total: 6 });
    assert_eq!(searched.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(stopped.checkpoint.is_none());
}
