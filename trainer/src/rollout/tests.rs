//! Engine tests on a scripted policy and in-process fake tools.

use super::*;
use crate::policy::{Policy, Segment, Transcript};
use crate::protocol::{Action, parse_action};
use crate::testkit::{
    ChatTokens, IM_END, IM_START, IMAGE_PAD, ScriptedPolicy, VISION_END, VISION_START,
};
use crate::tools::{
    FakeSearchTools, FakeToolCall, ImageQuery, ObservationPart, SearchTools, ToolFuture,
    ToolObservation,
};
use std::sync::Arc;
use std::time::Duration;

const IMG: &str = "<reason>I do not recognise it.</reason><search><img></search>";
const TXT: &str = "<reason>It is the Eiffel Tower.</reason><text_search>who designed the eiffel tower</text_search>";
const ANS: &str = "<reason>Now I know.</reason><answer>Gustave Eiffel</answer>";

fn png(w: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::new(w, 2)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn request(q: &str) -> RolloutRequest {
    RolloutRequest {
        id: format!("test#{q}"),
        question: q.into(),
        image: png(4),
        image_url: Some("http://img/1.png".into()),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Scripts keyed by the question: `q:img,txt,ans` etc.
fn script(text: &str) -> Vec<String> {
    let q = text.rsplit("Question: ").next().unwrap_or("");
    q.split(',')
        .map(|k| match k.trim() {
            "img" => IMG.to_string(),
            "txt" => TXT.to_string(),
            "ans" => ANS.to_string(),
            "none" => "<reason>hmm</reason> I give up".to_string(),
            // `t40`: a text search whose query is its latency (DelayedTools).
            k if k.starts_with('t') && k[1..].parse::<u64>().is_ok() => {
                format!("<reason>r</reason><text_search>{}</text_search>", &k[1..])
            }
            other => other.to_string(),
        })
        .collect()
}

fn engine<T: SearchTools + 'static>(
    cfg: RolloutConfig,
    tools: T,
    rt: &tokio::runtime::Runtime,
) -> RolloutEngine<T> {
    RolloutEngine::new(
        cfg,
        Arc::new(Prompts::builtin()),
        Arc::new(tools),
        rt.handle().clone(),
    )
}

fn fake_tools(latency_ms: u64) -> FakeSearchTools {
    FakeSearchTools::new(Duration::from_millis(latency_ms), |call| match call {
        FakeToolCall::Image { .. } => ToolObservation {
            parts: vec![
                ObservationPart::Text("1. Eiffel Tower - Wikipedia ".into()),
                ObservationPart::Image(png(3)),
            ],
            error: None,
        },
        FakeToolCall::Text(q) => {
            ToolObservation::text(format!("Summary for {q}: designed by Gustave Eiffel."))
        }
    })
}

/// The expected transcript, written out piece by piece independently of the
/// engine: (tokens, mask).
struct Expect(Vec<i64>, Vec<u8>);

impl Expect {
    fn special(&mut self, id: i64, m: u8) -> &mut Self {
        self.0.push(id);
        self.1.push(m);
        self
    }
    fn text(&mut self, s: &str, m: u8) -> &mut Self {
        for c in s.chars() {
            self.0.push(c as i64);
            self.1.push(m);
        }
        self
    }
    fn image(&mut self) -> &mut Self {
        self.special(VISION_START, 0);
        for _ in 0..4 {
            self.special(IMAGE_PAD, 0);
        }
        self.special(VISION_END, 0)
    }
    fn assistant(&mut self, turn: &str) -> &mut Self {
        self.special(IM_START, 0)
            .text("assistant\n", 0)
            .text(turn, 1)
            .special(IM_END, 1)
            .text("\n", 0)
    }
}

#[test]
fn response_mask_token_by_token_on_a_three_turn_conversation() {
    let rt = runtime();
    let cfg = RolloutConfig::default();
    let eng = engine(cfg, fake_tools(0), &rt);
    let mut policy = ScriptedPolicy::new(script);
    let (trajs, stats) = eng.run(&mut policy, &[request("img,txt,ans")], 1).unwrap();
    let t = &trajs[0];
    assert_eq!(t.end, EndReason::Answered);
    assert_eq!(
        (t.image_searches, t.text_searches, t.turns.len()),
        (1, 1, 3)
    );
    assert_eq!(stats.tool_calls, 2);

    let p = Prompts::builtin();
    let q = "img,txt,ans";
    let mut e = Expect(Vec::new(), Vec::new());
    e.special(IM_START, 0)
        .text("user\n", 0)
        .image()
        .text(&p.first_turn(q, 3).unwrap(), 0)
        .special(IM_END, 0)
        .text("\n", 0);
    e.assistant(IMG);
    e.special(IM_START, 0)
        .text("user\n<information>\n1. Eiffel Tower - Wikipedia ", 0)
        .image();
    e.text(
        &format!("\n</information>\n\n{}", p.after_search(true, q).unwrap()),
        0,
    )
    .special(IM_END, 0)
    .text("\n", 0);
    e.assistant(TXT);
    e.special(IM_START, 0).text("user\n<information>\nSummary for who designed the eiffel tower: designed by Gustave Eiffel.", 0);
    e.text(
        &format!("\n</information>\n\n{}", p.after_search(false, q).unwrap()),
        0,
    )
    .special(IM_END, 0)
    .text("\n", 0);
    e.assistant(ANS);

    let tr = &t.transcript;
    assert_eq!(tr.tokens.len(), e.0.len(), "transcript length");
    for i in 0..e.0.len() {
        assert_eq!(
            (tr.tokens[i], tr.response_mask[i]),
            (e.0[i], e.1[i]),
            "token {i}: got {:?} expected {:?}",
            ChatTokens::decode(&tr.tokens[i.saturating_sub(10)..=i]),
            ChatTokens::decode(&e.0[i.saturating_sub(10)..=i])
        );
    }
    assert_eq!(tr.images.len(), 2, "input image and the returned thumbnail");
    check_transcript(tr, &t.turns).unwrap();
    assert_eq!(tr.response_len(), IMG.len() + TXT.len() + ANS.len() + 3);
}

#[test]
fn check_transcript_catches_a_wrong_mask() {
    let rt = runtime();
    let eng = engine(RolloutConfig::default(), fake_tools(0), &rt);
    let (trajs, _) = eng
        .run(&mut ScriptedPolicy::new(script), &[request("txt,ans")], 1)
        .unwrap();
    let t = &trajs[0];
    let mut bad: Transcript = t.transcript.clone();
    let first_gen = bad.response_mask.iter().position(|&m| m == 1).unwrap();
    bad.response_mask[first_gen - 1] = 1; // the generation prompt's newline
    bad.sample_logprobs[first_gen - 1] = -1.0;
    assert!(check_transcript(&bad, &t.turns).is_err());
    let mut bad = t.transcript.clone();
    let last = bad.response_mask.iter().rposition(|&m| m == 1).unwrap();
    bad.response_mask[last] = 0;
    bad.sample_logprobs[last] = 0.0;
    assert!(check_transcript(&bad, &t.turns).is_err());
}

#[test]
fn limits_end_trajectories() {
    let rt = runtime();
    let run = |cfg: RolloutConfig, q: &str| {
        let tools = fake_tools(0);
        let eng = engine(cfg, tools, &rt);
        let (t, s) = eng
            .run(&mut ScriptedPolicy::new(script), &[request(q)], 0)
            .unwrap();
        (t.into_iter().next().unwrap(), s.tool_calls)
    };
    let d = RolloutConfig::default;
    let (t, calls) = run(d(), "img,img,ans");
    assert_eq!(
        (t.end, calls, t.turns.len()),
        (EndReason::ImageSearchLimit, 1, 2)
    );
    let (t, calls) = run(d(), "txt,txt,txt");
    assert_eq!((t.end, calls), (EndReason::RoundLimit, 2));
    let (t, calls) = run(
        RolloutConfig {
            max_rounds: 5,
            ..d()
        },
        "txt,txt,txt,ans",
    );
    assert_eq!((t.end, calls), (EndReason::TextSearchLimit, 2));
    let (t, _) = run(d(), "none");
    assert_eq!(t.end, EndReason::NoAction);
    let (t, _) = run(
        RolloutConfig {
            max_turn_tokens: 20,
            ..d()
        },
        "ans",
    );
    assert_eq!(
        (t.end, t.turns[0].token_ids.len()),
        (EndReason::TurnTokenLimit, 20)
    );
    // The second turn gets only what is left of the total budget.
    let budget = IMG.len() + 1 + 10;
    let (t, _) = run(
        RolloutConfig {
            max_response_tokens: budget,
            ..d()
        },
        "img,ans",
    );
    assert_eq!(
        (t.end, t.response_tokens()),
        (EndReason::ResponseTokenLimit, budget)
    );
    let (t, calls) = run(
        RolloutConfig {
            max_rounds: 1,
            ..d()
        },
        "img,ans",
    );
    assert_eq!((t.end, calls), (EndReason::RoundLimit, 0));
}

struct BrokenTools;

impl SearchTools for BrokenTools {
    fn image_search<'a>(&'a self, _: &'a ImageQuery) -> ToolFuture<'a> {
        Box::pin(async { panic!("tool bug") })
    }
    fn text_search<'a>(&'a self, _: &'a str) -> ToolFuture<'a> {
        Box::pin(std::future::pending())
    }
}

#[test]
fn failing_tools_reach_the_model_and_the_rollout_goes_on() {
    let rt = runtime();
    // A tool that reports an error: its message is what the model sees.
    let tools = FakeSearchTools::new(Duration::ZERO, |_| ToolObservation {
        parts: vec![ObservationPart::Text(
            "Search error: upstream returned 503.".into(),
        )],
        error: Some("503".into()),
    });
    let eng = engine(RolloutConfig::default(), tools, &rt);
    let (t, _) = eng
        .run(&mut ScriptedPolicy::new(script), &[request("txt,ans")], 0)
        .unwrap();
    assert_eq!((t[0].end, t[0].tool_errors), (EndReason::Answered, 1));
    assert!(
        ChatTokens::decode(&t[0].transcript.tokens)
            .contains("<information>\nSearch error: upstream returned 503.\n</information>")
    );

    // A tool that panics, and one that never answers: both become errors.
    // Separate runs: the panic (its backtrace can take a while to print)
    // must not race the hang's short timeout.
    let broken = |timeout_ms, req| {
        let eng = engine(RolloutConfig::default(), BrokenTools, &rt)
            .with_tool_timeout(Duration::from_millis(timeout_ms));
        let (t, _) = eng
            .run(&mut ScriptedPolicy::new(script), &[request(req)], 0)
            .unwrap();
        assert_eq!((t[0].end, t[0].tool_errors), (EndReason::Answered, 1));
        ChatTokens::decode(&t[0].transcript.tokens)
    };
    let text = broken(60_000, "img,ans");
    assert!(
        text.contains("search tool crashed") && text.contains("reason with your own knowledge"),
        "{text}"
    );
    assert!(broken(100, "txt,ans").contains("search timed out"));

    // A corrupt thumbnail is refused by the policy; the model gets an error.
    let tools = FakeSearchTools::new(Duration::ZERO, |_| ToolObservation {
        parts: vec![ObservationPart::Image(b"not a png".to_vec())],
        error: None,
    });
    let eng = engine(RolloutConfig::default(), tools, &rt);
    let (t, _) = eng
        .run(&mut ScriptedPolicy::new(script), &[request("img,ans")], 0)
        .unwrap();
    assert_eq!((t[0].end, t[0].tool_errors), (EndReason::Answered, 1));
    assert!(ChatTokens::decode(&t[0].transcript.tokens).contains("bad image in user turn"));
}

#[test]
fn a_bad_input_image_is_an_error_not_a_hang() {
    let rt = runtime();
    let eng = engine(RolloutConfig::default(), fake_tools(0), &rt);
    let req = RolloutRequest {
        id: "junk.parquet#7".into(),
        question: "ans".into(),
        image: b"junk".to_vec(),
        image_url: None,
    };
    let err = format!(
        "{:#}",
        eng.run(&mut ScriptedPolicy::new(script), &[req], 0)
            .unwrap_err()
    );
    assert!(
        err.contains("opening rollout 0 (junk.parquet#7)") && err.contains("not an image"),
        "{err}"
    );
}

#[test]
fn async_overlaps_generation_with_searches_and_sync_runs_rounds() {
    let rt = runtime();
    let qs = ["img,ans", "ans", "txt,ans", "img,txt,ans"];
    let reqs: Vec<_> = qs.iter().map(|q| request(q)).collect();
    let run = |mode, max_batch| {
        let cfg = RolloutConfig {
            mode,
            max_batch,
            ..Default::default()
        };
        let eng = engine(cfg, fake_tools(30), &rt);
        let mut policy = ScriptedPolicy::new(script).with_cost(Duration::from_micros(200));
        let (t, s) = eng.run(&mut policy, &reqs, 0).unwrap();
        (t, s, policy.calls)
    };
    let (ts, ss, calls) = run(RolloutMode::Sync, 0);
    assert_eq!(
        calls,
        vec![4, 3, 1],
        "one call per round, each with every live trajectory"
    );
    assert_eq!(ss.overlapped_calls, 0);
    assert_eq!(ss.tool_calls, 4);
    let (ta, sa, calls) = run(RolloutMode::Async, 1);
    assert!(
        sa.overlapped_calls > 0,
        "async generates while searches are in flight: {sa:?}"
    );
    assert_eq!(calls.iter().sum::<usize>(), 8);
    for (a, s) in ta.iter().zip(&ts) {
        assert_eq!(a.turn_texts(), s.turn_texts());
        assert_eq!(
            a.transcript.tokens, s.transcript.tokens,
            "same conversation either way"
        );
        check_transcript(&a.transcript, &a.turns).unwrap();
    }
    // Sync with capped batches still waits for the whole round.
    let (_, s, calls) = run(RolloutMode::Sync, 1);
    assert_eq!((calls.len(), s.overlapped_calls), (8, 0));
    let _ = Segment::Text(String::new());
}

#[test]
fn async_batches_that_mix_rounds_keep_every_session() {
    // Five trajectories, two per call, searches that answer at once: the
    // third call takes the last first-round trajectory with ones back from
    // their search, so a call holds slots at different rounds.
    let rt = runtime();
    let qs = ["img,ans", "txt,ans", "img,txt,ans", "ans", "txt,ans"];
    let reqs: Vec<_> = qs.iter().map(|q| request(q)).collect();
    let run = |mode| {
        let cfg = RolloutConfig {
            mode,
            max_batch: 2,
            ..Default::default()
        };
        let eng = engine(cfg, fake_tools(0), &rt);
        let mut policy = ScriptedPolicy::new(script).with_cost(Duration::from_millis(5));
        let (t, _) = eng.run(&mut policy, &reqs, 0).unwrap();
        (t, policy.calls)
    };
    let (ts, _) = run(RolloutMode::Sync);
    let (ta, calls) = run(RolloutMode::Async);
    assert_eq!(calls.iter().sum::<usize>(), 10, "every turn generated once");
    for (a, s) in ta.iter().zip(&ts) {
        assert_eq!(a.turn_texts(), s.turn_texts());
        assert_eq!(a.transcript.tokens, s.transcript.tokens);
    }
}

/// Text searches that answer after as many ms as their query says.
struct DelayedTools;

impl SearchTools for DelayedTools {
    fn image_search<'a>(&'a self, _: &'a ImageQuery) -> ToolFuture<'a> {
        Box::pin(async { ToolObservation::text("no images") })
    }
    fn text_search<'a>(&'a self, q: &'a str) -> ToolFuture<'a> {
        Box::pin(async move {
            let ms: u64 = q.trim().parse().expect("a latency in ms");
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ToolObservation::text(format!("results after {ms} ms"))
        })
    }
}

#[test]
fn async_lingers_for_sibling_results_then_generates_them_together() {
    let rt = runtime();
    // One call launches eight searches that answer 5 ms apart.
    let reqs: Vec<_> = (0..8)
        .map(|i| request(&format!("t{},ans", 40 + 5 * i)))
        .collect();
    let run = |linger| {
        let cfg = RolloutConfig {
            batch_linger_ms: linger,
            ..Default::default()
        };
        let eng = engine(cfg, DelayedTools, &rt);
        let mut policy = ScriptedPolicy::new(script).with_cost(Duration::from_micros(200));
        let (t, _) = eng.run(&mut policy, &reqs, 0).unwrap();
        assert!(t.iter().all(|t| t.end == EndReason::Answered), "{t:?}");
        policy.calls
    };
    assert_eq!(run(40), vec![8, 8], "gaps under the linger: one call");
    let calls = run(0);
    assert!(
        calls.len() >= 5,
        "without it, results 5 ms apart start their own calls: {calls:?}"
    );
    // A gap over the linger is not waited out.
    let calls = run(1);
    assert!(calls.len() >= 5, "1 ms linger, 5 ms gaps: {calls:?}");
}

/// Counts the searches started so far; each answers at once.
struct CountingTools(Arc<std::sync::atomic::AtomicUsize>);

impl SearchTools for CountingTools {
    fn image_search<'a>(&'a self, _: &'a ImageQuery) -> ToolFuture<'a> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async { ToolObservation::text("an image result") })
    }
    fn text_search<'a>(&'a self, _: &'a str) -> ToolFuture<'a> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async { ToolObservation::text("a text result") })
    }
}

/// After each streamed search turn, waits (up to `wait`) for that search to
/// start, and notes whether it started while the call was still decoding.
struct Probe {
    inner: ScriptedPolicy,
    started: Arc<std::sync::atomic::AtomicUsize>,
    wait: Duration,
    during: Vec<bool>,
}

impl Policy for Probe {
    type Session = crate::testkit::ScriptedSession;

    fn open(&mut self, user: &[Segment]) -> anyhow::Result<Self::Session> {
        self.inner.open(user)
    }
    fn push_user(&mut self, s: &mut Self::Session, user: &[Segment]) -> anyhow::Result<()> {
        self.inner.push_user(s, user)
    }
    fn generate(
        &mut self,
        sessions: &mut [&mut Self::Session],
        p: &crate::policy::SampleParams,
        seed: u64,
    ) -> anyhow::Result<Vec<crate::policy::TurnOutput>> {
        self.generate_streaming(sessions, p, seed, &mut |_, _| {})
    }
    fn generate_streaming(
        &mut self,
        sessions: &mut [&mut Self::Session],
        p: &crate::policy::SampleParams,
        seed: u64,
        on_done: &mut dyn FnMut(usize, &crate::policy::TurnOutput),
    ) -> anyhow::Result<Vec<crate::policy::TurnOutput>> {
        use std::sync::atomic::Ordering::SeqCst;
        let (started, wait, during) = (&self.started, self.wait, &mut self.during);
        self.inner
            .generate_streaming(sessions, p, seed, &mut |k, out| {
                let before = started.load(SeqCst);
                on_done(k, out);
                if matches!(
                    parse_action(&out.text),
                    Some(Action::ImageSearch | Action::TextSearch(_))
                ) {
                    let t0 = std::time::Instant::now();
                    while started.load(SeqCst) == before && t0.elapsed() < wait {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    during.push(started.load(SeqCst) > before);
                }
            })
    }
    fn push_assistant(&mut self, s: &mut Self::Session, text: &str) -> anyhow::Result<()> {
        self.inner.push_assistant(s, text)
    }
    fn transcript<'s>(&self, s: &'s Self::Session) -> &'s Transcript {
        self.inner.transcript(s)
    }
}

/// With `early_search_start`, async starts a turn's search the moment its
/// row finishes, while the call's longer rows still decode, and only once;
/// without it, and in sync mode, searches start after the call.
#[test]
fn early_search_start_starts_a_search_while_its_call_still_decodes() {
    let rt = runtime();
    let long = format!("<reason>{}</reason><answer>y</answer>", "x".repeat(200));
    let reqs = vec![request("img,ans"), request(&long), request("txt,ans")];
    let run = |mode, early, wait| {
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let cfg = RolloutConfig {
            mode,
            early_search_start: early,
            ..Default::default()
        };
        let eng = RolloutEngine::new(
            cfg,
            Arc::new(Prompts::builtin()),
            Arc::new(CountingTools(Arc::clone(&started))),
            rt.handle().clone(),
        );
        let mut policy = Probe {
            inner: ScriptedPolicy::new(script),
            started: Arc::clone(&started),
            wait,
            during: Vec::new(),
        };
        let (t, s) = eng.run(&mut policy, &reqs, 0).unwrap();
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(s.tool_calls, 2);
        (t, policy.during)
    };
    let (te, during) = run(RolloutMode::Async, true, Duration::from_secs(5));
    assert_eq!(during, vec![true, true], "both searches start mid-call");
    let short = Duration::from_millis(50);
    for mode in [RolloutMode::Async, RolloutMode::Sync] {
        let (t, during) = run(mode, false, short);
        assert_eq!(during, vec![false, false], "{mode:?}: after the call");
        for (a, b) in te.iter().zip(&t) {
            assert_eq!(a.end, EndReason::Answered);
            assert_eq!(a.turn_texts(), b.turn_texts());
            assert_eq!(a.transcript.tokens, b.transcript.tokens);
            assert_eq!(a.observations, b.observations);
        }
    }
}

/// With `continuous_batching`, a session whose search has returned joins
/// the running decode while a longer row still decodes: the whole batch
/// takes the long row's steps, no more. Trajectories are sync mode's, and
/// `max_batch` caps the rows decoding together.
#[test]
fn continuous_batching_rejoins_sessions_while_a_long_row_decodes() {
    let rt = runtime();
    let long = format!("<reason>{}</reason><answer>y</answer>", "x".repeat(800));
    let reqs = vec![request("txt,ans"), request(&long), request("img,txt,ans")];
    let run = |mode, continuous, max_batch, join_linger_steps| {
        let cfg = RolloutConfig {
            mode,
            continuous_batching: continuous,
            max_batch,
            join_linger_steps,
            ..Default::default()
        };
        let eng = engine(cfg, fake_tools(1), &rt);
        let mut p = ScriptedPolicy::new(script).with_cost(Duration::from_micros(500));
        let (t, s) = eng.run(&mut p, &reqs, 0).unwrap();
        assert_eq!(p.decoding(), 0, "every session left the decode");
        (t, s, p.steps)
    };
    let (want, _, _) = run(RolloutMode::Sync, false, 0, 0);
    let (got, stats, steps) = run(RolloutMode::Async, true, 0, 0);
    for (a, b) in want.iter().zip(&got) {
        assert_eq!(a.end, b.end);
        assert_eq!(a.turn_texts(), b.turn_texts());
        assert_eq!(a.transcript, b.transcript);
        assert_eq!(a.observations, b.observations);
        check_transcript(&b.transcript, &b.turns).unwrap();
    }
    assert_eq!(stats.tool_calls, 3);
    let long_steps = got[1].response_tokens();
    let others: usize = got[0].response_tokens().max(got[2].response_tokens());
    assert!(others * 2 < long_steps, "the test needs a long row");
    assert_eq!(
        steps.len(),
        long_steps,
        "the other turns decode beside the long row"
    );
    assert_eq!(steps[0], 3, "all three start together");
    assert_eq!(stats.generate_calls, steps.len());
    assert!(stats.overlapped_calls > 0);
    // Capped at two rows: the third waits its turn, nothing else changes.
    let (capped, _, steps) = run(RolloutMode::Async, true, 2, 0);
    assert!(steps.iter().all(|&n| n <= 2), "{steps:?}");
    assert_eq!(steps[0], 2);
    for (a, b) in want.iter().zip(&capped) {
        assert_eq!(a.turn_texts(), b.turn_texts());
        assert_eq!(a.transcript, b.transcript);
    }
    // Lingering to join: the returning sessions wait for each other while
    // the long row decodes (here past its end), so there are fewer, larger
    // admissions and more steps; the trajectories do not change.
    let (lingered, _, steps) = run(RolloutMode::Async, true, 0, 10_000);
    assert!(steps.len() > long_steps, "{} steps", steps.len());
    for (a, b) in want.iter().zip(&lingered) {
        assert_eq!(a.turn_texts(), b.turn_texts());
        assert_eq!(a.transcript, b.transcript);
    }
    // A policy without a continuous decode of its own (the trait's
    // default) runs each step's joiners as one whole call: the same
    // trajectories, every turn generated once.
    let cfg = RolloutConfig {
        mode: RolloutMode::Async,
        continuous_batching: true,
        ..Default::default()
    };
    let mut p = Probe {
        inner: ScriptedPolicy::new(script),
        started: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        wait: Duration::ZERO,
        during: Vec::new(),
    };
    let (whole, _) = engine(cfg, fake_tools(1), &rt)
        .run(&mut p, &reqs, 0)
        .unwrap();
    assert_eq!(p.decoding(), 0);
    assert!(p.inner.steps.is_empty());
    let turns: usize = whole.iter().map(|t| t.turns.len()).sum();
    assert_eq!(p.inner.calls.iter().sum::<usize>(), turns);
    for (a, b) in want.iter().zip(&whole) {
        assert_eq!(a.turn_texts(), b.turn_texts());
        assert_eq!(a.transcript, b.transcript);
    }
}
