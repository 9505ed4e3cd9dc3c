//! `mmsr-host bench rollout`, each half against its baseline in the same run:
//! - one rollout batch in async mode against round-synchronous mode, same
//!   policy and requests, with fake tools of a fixed latency (200 ms). The
//!   policy generates every turn itself (real cost, real batching), but the
//!   action each turn takes is scripted ([`ForcedActions`]), so the batch has
//!   a known search shape whatever the policy has learnt: [`Workload::Rag`]
//!   (every trajectory image-searches, text-searches, then answers: the most
//!   rounds the paper's limits allow) for the headline, and
//!   [`Workload::OnDemand`] (a quarter each of the four valid formats), also
//!   with turns of random length ([`Workload::OnDemandVaried`]). Async
//!   cannot beat (first-round generation + 2 × latency) by much: its gain
//!   is the later rounds' generation hidden behind searches;
//! - the scheduler alone ([`scheduler_runs`]): sync, async, and async with
//!   `early_search_start`, on a scripted policy whose decode steps cost the
//!   same at any batch size;
//! - one GRPO update step (the trainer's own [`grpo_update`]) against an
//!   equivalent PyTorch implementation (`tests/python/grpo_step.py`) on the
//!   same weights and batch; the weights after one step are compared too.
//!
//! Both halves run on the demo's tiny Qwen2.5-VL ([`super::tiny_qwen`]) on
//! the device and dtype asked for. The measuring code is generic over the
//! policy, and the Python side picks its twin from the exported
//! `config.json`'s `model_type` (the bigram test policy has one too).

use super::{BenchTarget, python, repo, sync, tiny_qwen};
use crate::algo::{AdamW, group_advantages};
use crate::model::QwenVlPolicy;
use crate::policy::{
    FinishReason, Join, Left, Policy, SampleParams, Segment, TrainablePolicy, Transcript,
    TurnOutput,
};
use crate::rollout::{
    Prompts, RolloutConfig, RolloutEngine, RolloutMode, RolloutRequest, RolloutStats,
};
use crate::testkit::{ChatTokens, ScriptedPolicy};
use crate::tools::{FakeSearchTools, FakeToolCall, ObservationPart, ToolObservation};
use crate::train::{AlgoConfig, UpdateSettings, grpo_update};
use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use tokio::runtime::Handle;

const ANSWER: &str = "<reason>r</reason><answer>a</answer>";
const IMAGE: &str = "<reason>r</reason><search><img></search>";
const TEXT: &str = "<reason>r</reason><text_search>landmark</text_search>";
/// The paper's valid formats.
const PATTERNS: [&[&str]; 4] = [
    &[ANSWER],
    &[IMAGE, ANSWER],
    &[TEXT, ANSWER],
    &[IMAGE, TEXT, ANSWER],
];

/// The search shape of a bench batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Image search, text search, answer: every trajectory, every round.
    Rag,
    /// The four valid formats in turn.
    OnDemand,
    /// The same, on a copy of the model whose turns end at random lengths
    /// (see [`RolloutBenchOptions::stop_chance`]), as a trained policy's do.
    OnDemandVaried,
}

/// Wraps a policy: it generates each turn (so generation costs what it
/// costs), then the turn's text is replaced by the next action of the
/// session's pattern, which is what the rollout engine acts on. Transcripts
/// keep the generated tokens.
pub struct ForcedActions<P> {
    inner: P,
    workload: Workload,
    opened: usize,
    /// Pattern and turn of the sessions in the inner continuous decode.
    decoding: HashMap<usize, (&'static [&'static str], usize)>,
}

pub struct ForcedSession<S> {
    inner: S,
    pattern: &'static [&'static str],
    turn: usize,
}

impl<P: Policy> ForcedActions<P> {
    pub fn new(inner: P, workload: Workload) -> Self {
        Self {
            inner,
            workload,
            opened: 0,
            decoding: HashMap::new(),
        }
    }

    pub fn into_inner(self) -> P {
        self.inner
    }
}

impl<P: Policy> Policy for ForcedActions<P> {
    type Session = ForcedSession<P::Session>;

    fn open(&mut self, user: &[Segment]) -> Result<Self::Session> {
        let pattern = match self.workload {
            Workload::Rag => PATTERNS[3],
            Workload::OnDemand | Workload::OnDemandVaried => PATTERNS[self.opened % PATTERNS.len()],
        };
        self.opened += 1;
        Ok(ForcedSession {
            inner: self.inner.open(user)?,
            pattern,
            turn: 0,
        })
    }

    fn push_user(&mut self, s: &mut Self::Session, user: &[Segment]) -> Result<()> {
        self.inner.push_user(&mut s.inner, user)
    }

    fn generate(
        &mut self,
        sessions: &mut [&mut Self::Session],
        params: &SampleParams,
        seed: u64,
    ) -> Result<Vec<TurnOutput>> {
        self.generate_streaming(sessions, params, seed, &mut |_, _| {})
    }

    fn generate_streaming(
        &mut self,
        sessions: &mut [&mut Self::Session],
        params: &SampleParams,
        seed: u64,
        on_done: &mut dyn FnMut(usize, &TurnOutput),
    ) -> Result<Vec<TurnOutput>> {
        let forced: Vec<&'static str> = sessions
            .iter()
            .map(|s| s.pattern[s.turn.min(s.pattern.len() - 1)])
            .collect();
        let force = |k: usize, out: &mut TurnOutput| {
            out.text = forced[k].to_string();
            out.finish = FinishReason::Stop;
        };
        let mut inner: Vec<&mut P::Session> = sessions.iter_mut().map(|s| &mut s.inner).collect();
        let mut outs = self
            .inner
            .generate_streaming(&mut inner, params, seed, &mut |k, out| {
                let mut out = out.clone();
                force(k, &mut out);
                on_done(k, &out);
            })?;
        for (k, (s, out)) in sessions.iter_mut().zip(&mut outs).enumerate() {
            force(k, out);
            s.turn += 1;
        }
        Ok(outs)
    }

    fn decode_step(
        &mut self,
        join: Vec<Join<Self::Session>>,
        params: &SampleParams,
        seed: u64,
    ) -> Result<Vec<Left<Self::Session>>> {
        let join = join
            .into_iter()
            .map(|j| {
                self.decoding
                    .insert(j.key, (j.session.pattern, j.session.turn));
                Join {
                    key: j.key,
                    session: j.session.inner,
                    max_new_tokens: j.max_new_tokens,
                }
            })
            .collect();
        let left = self.inner.decode_step(join, params, seed)?;
        left.into_iter()
            .map(|l| {
                let (pattern, turn) = self
                    .decoding
                    .remove(&l.key)
                    .with_context(|| format!("session {} left without joining", l.key))?;
                let mut out = l.turn;
                out.text = pattern[turn.min(pattern.len() - 1)].to_string();
                out.finish = FinishReason::Stop;
                Ok(Left {
                    key: l.key,
                    session: ForcedSession {
                        inner: l.session,
                        pattern,
                        turn: turn + 1,
                    },
                    turn: out,
                })
            })
            .collect()
    }

    fn decoding(&self) -> usize {
        self.inner.decoding()
    }

    fn push_assistant(&mut self, s: &mut Self::Session, text: &str) -> Result<()> {
        self.inner.push_assistant(&mut s.inner, text)
    }

    fn transcript<'s>(&self, s: &'s Self::Session) -> &'s Transcript {
        self.inner.transcript(&s.inner)
    }

    fn vision_placeholders(&self) -> Vec<i64> {
        self.inner.vision_placeholders()
    }
}

#[derive(Clone, Debug)]
pub struct RolloutBenchOptions {
    pub prompts: usize,
    pub n: usize,
    pub max_turn_tokens: usize,
    /// For the varied workload: the chance that each generated token ends
    /// the turn (0: that workload is not run). A random model almost never
    /// stops, so the other workloads' turns are all `max_turn_tokens` long
    /// and a call's rows finish together; here they finish apart.
    pub stop_chance: f64,
    /// Sessions per generation call (0: no cap), as GPU memory imposes.
    pub max_batch: usize,
    /// The scheduler-only runs: a scripted policy whose decode steps cost
    /// this each, whatever the batch (zero: not run).
    pub sched_step: Duration,
    /// Their reasons' longest length in tokens (each turn draws 8..=this).
    pub sched_reason_tokens: usize,
    /// A second set of them with each search's latency drawn from
    /// `tool_latency` × [1 − this, 1 + this], as real APIs' vary (0: not
    /// run).
    pub sched_tool_jitter: f64,
    /// Async's wait for sibling search results (`rollout.batch_linger_ms`).
    pub batch_linger_ms: u64,
    /// Continuous batching's wait for other joiners
    /// (`rollout.join_linger_steps`).
    pub join_linger_steps: u64,
    pub tool_latency: Duration,
    /// Runs of each mode, alternating; the best counts (other load on the
    /// machine only ever adds time).
    pub rollout_repeats: usize,
    /// Trajectories in the GRPO batch.
    pub grpo_trajectories: usize,
    pub ppo_epochs: usize,
    /// Trajectories per optimizer step (0: the whole batch, one step).
    pub mini_batch: usize,
    pub micro_batch: usize,
    pub lr: f64,
    /// Timed GRPO steps per round on each side (two rounds, taking turns),
    /// after one untimed step.
    pub grpo_repeats: usize,
    pub target: BenchTarget,
    pub python: PathBuf,
    pub script: PathBuf,
}

impl Default for RolloutBenchOptions {
    fn default() -> Self {
        Self {
            // A random model rarely stops, so every turn is max_turn_tokens
            // long. On a 2-core box the first round (its prefill holds the
            // whole instruction prompt and the image) takes ~0.5 s, later
            // rounds ~0.3 s, against 200 ms searches; async gains most when
            // a round's generation equals the latency (see `async_bound`).
            prompts: 8,
            n: 4,
            max_turn_tokens: 32,
            stop_chance: 1.0 / 16.0,
            max_batch: 8,
            sched_step: Duration::from_millis(3),
            sched_reason_tokens: 96,
            sched_tool_jitter: 0.75,
            batch_linger_ms: RolloutConfig::default().batch_linger_ms,
            join_linger_steps: RolloutConfig::default().join_linger_steps,
            tool_latency: Duration::from_millis(200),
            rollout_repeats: 3,
            grpo_trajectories: 32,
            ppo_epochs: 1,
            mini_batch: 0,
            micro_batch: 8,
            lr: 1e-3,
            grpo_repeats: 10,
            target: BenchTarget::default(),
            python: python(),
            script: repo().join("tests/python/grpo_step.py"),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ModeRun {
    pub wall_ms: f64,
    pub generate_ms: f64,
    pub tool_wait_ms: f64,
    pub generate_calls: usize,
    pub overlapped_calls: usize,
    pub tool_calls: usize,
    pub generated_tokens: usize,
}

impl ModeRun {
    fn new(s: &RolloutStats, tokens: usize) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Self {
            wall_ms: ms(s.wall),
            generate_ms: ms(s.generate),
            tool_wait_ms: ms(s.tool_wait),
            generate_calls: s.generate_calls,
            overlapped_calls: s.overlapped_calls,
            tool_calls: s.tool_calls,
            generated_tokens: tokens,
        }
    }
}

/// One workload in both modes: the best run of each.
#[derive(Clone, Debug, Serialize)]
pub struct ModeComparison {
    pub workload: Workload,
    pub async_run: ModeRun,
    pub sync_run: ModeRun,
    /// Async with `continuous_batching`.
    pub continuous_run: ModeRun,
    /// sync / async wall time.
    pub async_speedup: f64,
    /// sync / continuous wall time.
    pub continuous_speedup: f64,
    /// The most any scheduling could gain here, from the sync run: sync
    /// time over max(all generation, first-round generation + two
    /// searches), generation being serial on the model thread.
    pub async_bound: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RolloutBenchReport {
    pub policy: String,
    pub device: String,
    pub dtype: String,
    pub trajectories: usize,
    pub tool_latency_ms: f64,
    pub max_batch: usize,
    pub batch_linger_ms: u64,
    pub join_linger_steps: u64,
    /// The RAG-shaped batch (every trajectory searches twice).
    pub async_ms: f64,
    pub sync_ms: f64,
    /// sync / async wall time.
    pub async_speedup: f64,
    pub rag: ModeComparison,
    pub on_demand: ModeComparison,
    pub stop_chance: f64,
    /// The on-demand batch with turns of random length (`stop_chance`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_demand_varied: Option<ModeComparison>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerRuns>,
    /// The same with tools of varying latency (`sched_tool_jitter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler_varied_tools: Option<SchedulerRuns>,
    pub grpo_trajectories: usize,
    pub grpo_response_tokens: usize,
    /// Best of the timed steps (robust to other load on the machine).
    pub grpo_step_ms: f64,
    pub torch_grpo_step_ms: f64,
    /// Ours over PyTorch's, best against best (below 1: faster).
    pub grpo_step_ratio: f64,
    pub grpo_step_median_ms: f64,
    pub torch_grpo_step_median_ms: f64,
    /// Largest |Δ| between the weights after one step here and in PyTorch.
    pub grpo_max_weight_diff: f64,
    /// ‖Δ ours − Δ PyTorch‖ / ‖Δ PyTorch‖ over that step's updates.
    pub grpo_update_rel_diff: f64,
}

fn png(seed: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_pixel(8, 6, image::Rgb([seed, 90, 200]))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("in-memory PNG");
    out
}

fn requests(prompts: usize, n: usize) -> Vec<RolloutRequest> {
    (0..prompts)
        .flat_map(|i| {
            std::iter::repeat_n(
                RolloutRequest {
                    id: format!("bench#{i}"),
                    question: format!("What is the landmark in picture {i}?"),
                    image: png(i as u8),
                    image_url: None,
                },
                n,
            )
        })
        .collect()
}

fn fake_tools(latency: Duration) -> Arc<FakeSearchTools> {
    Arc::new(fake_tools_of(latency))
}

fn fake_tools_of(latency: Duration) -> FakeSearchTools {
    FakeSearchTools::new(latency, |call| match call {
        FakeToolCall::Image { .. } => ToolObservation {
            parts: vec![
                ObservationPart::Text("1. A landmark - Example\n".into()),
                ObservationPart::Image(png(1)),
            ],
            error: None,
        },
        FakeToolCall::Text(q) => ToolObservation::text(format!("Results for {q}.")),
    })
}

fn rollout_cfg(o: &RolloutBenchOptions, mode: RolloutMode) -> RolloutConfig {
    RolloutConfig {
        n: o.n,
        batch_prompts: o.prompts,
        mode,
        max_turn_tokens: o.max_turn_tokens,
        max_response_tokens: 3 * o.max_turn_tokens,
        max_batch: o.max_batch,
        batch_linger_ms: o.batch_linger_ms,
        join_linger_steps: o.join_linger_steps,
        ..RolloutConfig::default()
    }
}

/// One rollout batch of `workload` in each mode, each on a fresh copy of
/// the policy, `rollout_repeats` times alternating; the best of each.
pub fn rollout_modes<P: Policy>(
    make: &dyn Fn() -> Result<P>,
    o: &RolloutBenchOptions,
    workload: Workload,
    handle: &Handle,
) -> Result<ModeComparison> {
    ensure!(o.rollout_repeats >= 1, "rollout_repeats must be at least 1");
    let reqs = requests(o.prompts, o.n);
    let run = |mode, continuous| -> Result<ModeRun> {
        let engine = RolloutEngine::new(
            RolloutConfig {
                continuous_batching: continuous,
                ..rollout_cfg(o, mode)
            },
            Arc::new(Prompts::builtin()),
            fake_tools(o.tool_latency),
            handle.clone(),
        );
        let mut policy = ForcedActions::new(make()?, workload);
        let (trajs, stats) = engine.run(&mut policy, &reqs, 1)?;
        Ok(ModeRun::new(
            &stats,
            trajs.iter().map(|t| t.response_tokens()).sum(),
        ))
    };
    let (mut fast, mut slow, mut cont) = (None, None, None);
    for _ in 0..o.rollout_repeats {
        fast = best(fast, run(RolloutMode::Async, false)?);
        slow = best(slow, run(RolloutMode::Sync, false)?);
        cont = best(cont, run(RolloutMode::Async, true)?);
    }
    let (async_run, sync_run, continuous_run) = (
        fast.expect("≥ 1 run"),
        slow.expect("≥ 1 run"),
        cont.expect("≥ 1 run"),
    );
    let trajectories = reqs.len() as f64;
    let turns = trajectories + sync_run.tool_calls as f64;
    let first_round = sync_run.generate_ms * trajectories / turns;
    let chain = 2.0 * o.tool_latency.as_secs_f64() * 1e3;
    Ok(ModeComparison {
        workload,
        async_speedup: sync_run.wall_ms / async_run.wall_ms,
        continuous_speedup: sync_run.wall_ms / continuous_run.wall_ms,
        async_bound: sync_run.wall_ms / sync_run.generate_ms.max(first_round + chain),
        async_run,
        sync_run,
        continuous_run,
    })
}

/// The scheduler alone, on the on-demand shapes: a scripted policy whose
/// decode steps each cost the same whatever the batch size (a GPU's shape at
/// these sizes; on two CPU cores a step's cost follows its rows), turns of
/// differing length (as a trained policy's are) and no cap on a call.
#[derive(Clone, Debug, Serialize)]
pub struct SchedulerRuns {
    pub step_ms: f64,
    /// Each search's latency is `tool_latency` × [1 − this, 1 + this].
    pub tool_jitter: f64,
    pub mean_turn_tokens: f64,
    pub sync_run: ModeRun,
    /// Async as configured by default: searches start when their call returns.
    pub async_run: ModeRun,
    /// Async with `early_search_start`: as their rows finish.
    pub async_early: ModeRun,
    /// Async with `continuous_batching`: one decode that sessions join
    /// and leave between steps.
    pub continuous: ModeRun,
    /// sync / continuous.
    pub continuous_speedup: f64,
    /// The longest trajectory's own chain: its turns' tokens × the step
    /// cost plus its searches' latency. No schedule ends the batch sooner.
    pub critical_path_ms: f64,
    /// sync / async.
    pub async_speedup: f64,
    /// async / async with `early_search_start` (above 1: the early start wins).
    pub early_start_speedup: f64,
}

/// A turn of `pattern`'s `turn`-th action with a reason of 8..=`longest`
/// tokens, drawn from the trajectory and turn.
fn scheduled_turn(k: usize, turn: usize, longest: usize) -> String {
    let pattern = PATTERNS[k % PATTERNS.len()];
    let action = pattern[turn.min(pattern.len() - 1)];
    let span = longest.saturating_sub(8) as u64 + 1;
    let len = 8 + (crate::rollout::mix(k as u64, turn as u64) % span) as usize;
    action
        .replace(
            "<reason>r</reason>",
            &format!("<reason>{}</reason>", "r".repeat(len)),
        )
        .replace("landmark", &format!("landmark {k}"))
}

/// Trajectory `k`'s image or text search latency: `base` × a factor drawn
/// from [1 − jitter, 1 + jitter].
fn search_latency(base: Duration, jitter: f64, k: usize, image: bool) -> Duration {
    let u = (crate::rollout::mix(k as u64, 1000 + u64::from(image)) % 1001) as f64 / 1000.0;
    base.mul_f64(1.0 - jitter + 2.0 * jitter * u)
}

pub fn scheduler_runs(
    o: &RolloutBenchOptions,
    jitter: f64,
    handle: &Handle,
) -> Result<SchedulerRuns> {
    ensure!(o.rollout_repeats >= 1, "rollout_repeats must be at least 1");
    ensure!(
        (0.0..=1.0).contains(&jitter),
        "the tools' latency jitter {jitter} is not in [0, 1]"
    );
    let base = o.tool_latency;
    let trajectories = o.prompts * o.n;
    let reqs: Vec<RolloutRequest> = (0..trajectories)
        .map(|k| RolloutRequest {
            id: format!("sched#{k}"),
            question: format!("q{k}"),
            image: png(k as u8),
            // Names the trajectory to the tools, for its latency.
            image_url: Some(format!("sched://{k}")),
        })
        .collect();
    let longest = o.sched_reason_tokens;
    let run = |mode, early, continuous| -> Result<ModeRun> {
        let turn_tokens = longest + 64;
        // No cap on a call: a GPU batches the whole round.
        let cfg = RolloutConfig {
            max_turn_tokens: turn_tokens,
            max_response_tokens: 3 * turn_tokens,
            max_batch: 0,
            early_search_start: early,
            continuous_batching: continuous,
            ..rollout_cfg(o, mode)
        };
        let tools = fake_tools_of(base).with_latency_of(move |call| {
            let (k, image) = match call {
                FakeToolCall::Image { url, .. } => (
                    url.as_deref().and_then(|u| u.strip_prefix("sched://")),
                    true,
                ),
                FakeToolCall::Text(q) => (q.strip_prefix("landmark "), false),
            };
            let k = k.and_then(|k| k.parse().ok()).unwrap_or(0);
            search_latency(base, jitter, k, image)
        });
        let engine = RolloutEngine::new(
            cfg,
            Arc::new(Prompts::builtin()),
            Arc::new(tools),
            handle.clone(),
        );
        let mut policy = ScriptedPolicy::new(move |text: &str| {
            // The first turn ends with the question, `q{k}`.
            let k: usize = text
                .rsplit("Question: q")
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            (0..3).map(|t| scheduled_turn(k, t, longest)).collect()
        })
        .with_cost(o.sched_step);
        let (trajs, stats) = engine.run(&mut policy, &reqs, 1)?;
        Ok(ModeRun::new(
            &stats,
            trajs.iter().map(|t| t.response_tokens()).sum(),
        ))
    };
    let (mut sync_run, mut async_run, mut early, mut cont) = (None, None, None, None);
    for _ in 0..o.rollout_repeats {
        sync_run = best(sync_run, run(RolloutMode::Sync, false, false)?);
        async_run = best(async_run, run(RolloutMode::Async, false, false)?);
        early = best(early, run(RolloutMode::Async, true, false)?);
        cont = best(cont, run(RolloutMode::Async, false, true)?);
    }
    let (sync_run, async_run, async_early, continuous) = (
        sync_run.expect("≥ 1 run"),
        async_run.expect("≥ 1 run"),
        early.expect("≥ 1 run"),
        cont.expect("≥ 1 run"),
    );
    let turns = trajectories + sync_run.tool_calls;
    let critical_path_ms = (0..trajectories)
        .map(|k| {
            let pattern = PATTERNS[k % PATTERNS.len()];
            let tokens: usize = (0..pattern.len())
                .map(|t| ChatTokens::text(&scheduled_turn(k, t, longest)).len() + 1)
                .sum();
            let searches: Duration = pattern
                .iter()
                .map(|&a| match a {
                    IMAGE => search_latency(base, jitter, k, true),
                    TEXT => search_latency(base, jitter, k, false),
                    _ => Duration::ZERO,
                })
                .sum();
            tokens as f64 * o.sched_step.as_secs_f64() * 1e3 + searches.as_secs_f64() * 1e3
        })
        .fold(0.0, f64::max);
    Ok(SchedulerRuns {
        critical_path_ms,
        tool_jitter: jitter,
        step_ms: o.sched_step.as_secs_f64() * 1e3,
        mean_turn_tokens: sync_run.generated_tokens as f64 / turns as f64,
        async_speedup: sync_run.wall_ms / async_run.wall_ms,
        early_start_speedup: async_run.wall_ms / async_early.wall_ms,
        continuous_speedup: sync_run.wall_ms / continuous.wall_ms,
        sync_run,
        async_run,
        async_early,
        continuous,
    })
}

/// The faster of the best run so far and a new one (other load on the
/// machine only ever adds time).
fn best(so_far: Option<ModeRun>, run: ModeRun) -> Option<ModeRun> {
    match so_far {
        Some(a) if a.wall_ms <= run.wall_ms => Some(a),
        _ => Some(run),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn algo(o: &RolloutBenchOptions) -> AlgoConfig {
    AlgoConfig {
        kl_coef: 0.001,
        ppo_epochs: o.ppo_epochs,
        mini_batch: o.mini_batch,
        micro_batch: o.micro_batch,
        ..AlgoConfig::default()
    }
}

const GRAD_CLIP: f64 = 1.0;

/// Step times of one side: best and median, in ms.
#[derive(Clone, Copy, Debug)]
pub struct StepTimes {
    pub best_ms: f64,
    pub median_ms: f64,
}

impl StepTimes {
    fn of(times: Vec<f64>) -> Self {
        Self {
            best_ms: times.iter().copied().fold(f64::INFINITY, f64::min),
            median_ms: median(times),
        }
    }
}

/// Timed rounds per side (each `grpo_repeats` steps).
const GRPO_ROUNDS: usize = 2;

/// Runs the PyTorch twin once on `dir`; its timed step times (ms).
fn run_twin(o: &RolloutBenchOptions, dir: &Path) -> Result<Vec<f64>> {
    let out = Command::new(&o.python)
        .arg(&o.script)
        .arg(dir)
        .output()
        .with_context(|| format!("running {} {}", o.python.display(), o.script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            o.script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("result.json"))?)?;
    result["step_ms"]
        .as_array()
        .context("result.json has no step_ms")?
        .iter()
        .map(|v| {
            v.as_f64()
                .context("result.json: step_ms holds a non-number")
        })
        .collect()
}

pub struct GrpoComparison {
    pub ours: StepTimes,
    pub torch: StepTimes,
    /// Largest |Δ| between the weights after one step on each side.
    pub max_weight_diff: f64,
    /// ‖ours − theirs‖ / ‖theirs − start‖ after one step: robust to Adam's
    /// first step, which moves every weight by ±lr whatever the size of its
    /// gradient, so a gradient near 0 can flip sign between kernels.
    pub update_rel_diff: f64,
    pub response_tokens: usize,
}

/// The GRPO step here and in PyTorch, from the same weights on the same
/// batch.
pub fn grpo_vs_torch<P: TrainablePolicy>(
    policy: P,
    o: &RolloutBenchOptions,
    handle: &Handle,
) -> Result<GrpoComparison> {
    ensure!(o.grpo_repeats >= 1, "grpo_repeats must be at least 1");
    let dir = tempfile_dir()?;
    policy
        .export(&dir.join("model"))
        .context("exporting the bench policy")?;
    // A realistic batch: real multi-turn transcripts from the policy itself.
    let prompts = o.grpo_trajectories.div_ceil(4);
    let engine = RolloutEngine::new(
        rollout_cfg(
            &RolloutBenchOptions {
                prompts,
                n: 4,
                ..o.clone()
            },
            RolloutMode::Sync,
        ),
        Arc::new(Prompts::builtin()),
        fake_tools(Duration::ZERO),
        handle.clone(),
    );
    let mut forced = ForcedActions::new(policy, Workload::OnDemand);
    let (trajs, _) = engine.run(&mut forced, &requests(prompts, 4), 2)?;
    let mut policy = forced.into_inner();
    let batch: Vec<&Transcript> = trajs
        .iter()
        .take(o.grpo_trajectories)
        .map(|t| &t.transcript)
        .collect();
    let rewards: Vec<f64> = (0..batch.len())
        .map(|i| ((i * 7) % 5) as f64 / 4.0)
        .collect();
    let advantages = group_advantages(&rewards, 4.min(batch.len()).max(1), true, 1e-6);
    let trainable: Vec<String> = policy
        .trainable_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    write_batch(&dir, &batch, &advantages, &trainable, o)?;

    let algo = algo(o);
    let settings = UpdateSettings {
        algo: &algo,
        temperature: 1.0,
        grad_clip: GRAD_CLIP,
        lr: o.lr,
        response_budget: 0,
    };
    let named = policy.trainable_parameters();
    let before: Vec<Tensor> = named.iter().map(|(_, t)| cpu_f32(t)).collect();
    let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
    let mut optim = AdamW::new(named, crate::algo::AdamWConfig::default());
    // Untimed first step: its result is what the two sides compare.
    grpo_update(
        &mut policy,
        &mut optim,
        &params,
        &batch,
        &advantages,
        &settings,
    )?;
    let after_one: Vec<(String, Tensor)> = policy
        .trainable_parameters()
        .into_iter()
        .map(|(n, t)| (n, cpu_f32(&t)))
        .collect();
    // The sides take turns, so load that comes and goes on the machine
    // falls on both.
    let (mut ours, mut theirs_ms) = (Vec::new(), Vec::new());
    let device = params.first().map_or(Device::Cpu, Tensor::device);
    for _ in 0..GRPO_ROUNDS {
        for _ in 0..o.grpo_repeats {
            sync(device);
            let t0 = Instant::now();
            grpo_update(
                &mut policy,
                &mut optim,
                &params,
                &batch,
                &advantages,
                &settings,
            )?;
            sync(device);
            ours.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        theirs_ms.extend(run_twin(o, &dir)?);
    }
    let theirs = Tensor::read_safetensors(dir.join("weights.safetensors"))?;
    let (mut max_diff, mut gap2, mut step2) = (0f64, 0f64, 0f64);
    for ((name, ours), w0) in after_one.iter().zip(&before) {
        let (_, t) = theirs
            .iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("PyTorch returned no `{name}`"))?;
        let gap = ours - t.to_kind(Kind::Float);
        max_diff = max_diff.max(gap.abs().max().double_value(&[]));
        gap2 += gap.square().sum(Kind::Double).double_value(&[]);
        step2 += (t.to_kind(Kind::Float) - w0)
            .square()
            .sum(Kind::Double)
            .double_value(&[]);
    }
    let response_tokens = batch.iter().map(|t| t.response_len()).sum();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(GrpoComparison {
        ours: StepTimes::of(ours),
        torch: StepTimes::of(theirs_ms),
        max_weight_diff: max_diff,
        update_rel_diff: gap2.sqrt() / step2.sqrt().max(f64::MIN_POSITIVE),
        response_tokens,
    })
}

fn cpu_f32(t: &Tensor) -> Tensor {
    t.detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .copy()
}

fn tempfile_dir() -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("mmsr-bench-grpo-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The batch as the Python side reads it: padded tokens, lengths, masks,
/// advantages, the encoded images (concatenated, with each one's length
/// and transcript), and the settings of the step.
fn write_batch(
    dir: &Path,
    batch: &[&Transcript],
    adv: &[f64],
    trainable: &[String],
    o: &RolloutBenchOptions,
) -> Result<()> {
    let len = batch.iter().map(|t| t.tokens.len()).max().unwrap_or(1);
    let b = batch.len();
    let mut tokens = vec![0i64; b * len];
    let mut mask = vec![0f32; b * len];
    for (i, t) in batch.iter().enumerate() {
        tokens[i * len..i * len + t.tokens.len()].copy_from_slice(&t.tokens);
        for (j, &m) in t.response_mask.iter().enumerate() {
            mask[i * len + j] = f32::from(m);
        }
    }
    let shape = [b as i64, len as i64];
    let lengths: Vec<i64> = batch.iter().map(|t| t.tokens.len() as i64).collect();
    let adv: Vec<f32> = adv.iter().map(|&a| a as f32).collect();
    let (mut bytes, mut sizes, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for (i, t) in batch.iter().enumerate() {
        for img in &t.images {
            bytes.extend_from_slice(img);
            sizes.push(img.len() as i64);
            rows.push(i as i64);
        }
    }
    let mut tensors = vec![
        ("tokens", Tensor::from_slice(&tokens).view(shape)),
        ("mask", Tensor::from_slice(&mask).view(shape)),
        ("lengths", Tensor::from_slice(&lengths)),
        ("advantages", Tensor::from_slice(&adv)),
    ];
    if !sizes.is_empty() {
        tensors.push(("image_bytes", Tensor::from_slice(&bytes)));
        tensors.push(("image_sizes", Tensor::from_slice(&sizes)));
        tensors.push(("image_rows", Tensor::from_slice(&rows)));
    }
    Tensor::write_safetensors(&tensors, dir.join("batch.safetensors"))?;
    let (device, dtype) = o.target.torch_names()?;
    let a = algo(o);
    let adamw = crate::algo::AdamWConfig::default();
    let settings = serde_json::json!({
        "temperature": 1.0,
        "clip_low": a.clip_low,
        "clip_high": a.clip_high,
        "kl_coef": a.kl_coef,
        "entropy_coef": a.entropy_coef,
        "ppo_epochs": a.ppo_epochs,
        "mini_batch": a.mini_batch,
        "micro_batch": a.micro_batch,
        "lr": o.lr,
        "betas": [adamw.betas.0, adamw.betas.1],
        "eps": adamw.eps,
        "weight_decay": adamw.weight_decay,
        "grad_clip": GRAD_CLIP,
        "repeats": o.grpo_repeats,
        "device": device,
        "dtype": dtype,
        "trainable": trainable,
    });
    std::fs::write(
        dir.join("settings.json"),
        serde_json::to_string_pretty(&settings)?,
    )?;
    Ok(())
}

/// Copies the model dir `from` to `to`, listing about `chance` × vocab
/// plain-text ids as end-of-turn in its generation_config.json: the random
/// model's next token is near uniform, so each one ends the turn with about
/// that chance.
fn with_stop_chance(from: &Path, to: &Path, chance: f64, policy: &QwenVlPolicy) -> Result<()> {
    ensure!(
        (0.0..=1.0).contains(&chance),
        "stop chance {chance} is not in [0, 1]"
    );
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        std::fs::copy(&path, to.join(path.file_name().context("a file")?))
            .with_context(|| format!("copying {}", path.display()))?;
    }
    let vocab = policy.model().cfg.text.vocab_size as f64;
    // The byte-level vocabulary comes first; the added tokens follow it.
    let plain = policy
        .tokenizer()
        .token_id("<|endoftext|>")
        .context("the tiny tokenizer has no <|endoftext|>")?;
    let k = ((chance * vocab).round() as i64).clamp(0, plain);
    let mut eos = vec![policy.tokenizer().im_end];
    eos.extend((0..k).map(|i| i * plain / k.max(1)));
    let path = to.join("generation_config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    config["eos_token_id"] = serde_json::json!(eos);
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}

/// Both halves on the tiny Qwen2.5-VL, each mode and the GRPO step from
/// the same weights.
pub fn run(o: &RolloutBenchOptions, handle: &Handle) -> Result<RolloutBenchReport> {
    let dir = tempfile::tempdir()?;
    let (policy, weights) = tiny_qwen(dir.path(), &o.target)?;
    let opts = o.target.options()?;
    let make = || QwenVlPolicy::load(&weights, &opts);
    let rag = rollout_modes(&make, o, Workload::Rag, handle)?;
    let on_demand = rollout_modes(&make, o, Workload::OnDemand, handle)?;
    let on_demand_varied = if o.stop_chance > 0.0 {
        let varied = dir.path().join("weights-varied");
        with_stop_chance(&weights, &varied, o.stop_chance, &policy)?;
        let make = || QwenVlPolicy::load(&varied, &opts);
        Some(rollout_modes(&make, o, Workload::OnDemandVaried, handle)?)
    } else {
        None
    };
    let scheduler = if o.sched_step.is_zero() {
        None
    } else {
        Some(scheduler_runs(o, 0.0, handle)?)
    };
    let scheduler_varied_tools = if o.sched_step.is_zero() || o.sched_tool_jitter == 0.0 {
        None
    } else {
        Some(scheduler_runs(o, o.sched_tool_jitter, handle)?)
    };
    let g = grpo_vs_torch(policy, o, handle)?;
    let (device, dtype) = o.target.torch_names()?;
    Ok(RolloutBenchReport {
        policy: "tiny Qwen2.5-VL (hidden 128, 4 layers, vocab 2048, random)".into(),
        device,
        dtype: dtype.into(),
        trajectories: o.prompts * o.n,
        tool_latency_ms: o.tool_latency.as_secs_f64() * 1e3,
        max_batch: o.max_batch,
        batch_linger_ms: o.batch_linger_ms,
        join_linger_steps: o.join_linger_steps,
        async_ms: rag.async_run.wall_ms,
        sync_ms: rag.sync_run.wall_ms,
        async_speedup: rag.async_speedup,
        rag,
        on_demand,
        stop_chance: o.stop_chance,
        on_demand_varied,
        scheduler,
        scheduler_varied_tools,
        grpo_trajectories: o.grpo_trajectories,
        grpo_response_tokens: g.response_tokens,
        grpo_step_ms: g.ours.best_ms,
        torch_grpo_step_ms: g.torch.best_ms,
        grpo_step_ratio: g.ours.best_ms / g.torch.best_ms,
        grpo_step_median_ms: g.ours.median_ms,
        torch_grpo_step_median_ms: g.torch.median_ms,
        grpo_max_weight_diff: g.max_weight_diff,
        grpo_update_rel_diff: g.update_rel_diff,
    })
}

pub fn print_table(r: &RolloutBenchReport) {
    println!(
        "rollout batch: {} trajectories of the {}, {} on {}, tools {:.0} ms, ≤{} sessions per generation call, async lingers {} ms for sibling results, continuous joiners {} steps (best of runs)",
        r.trajectories,
        r.policy,
        r.dtype,
        r.device,
        r.tool_latency_ms,
        r.max_batch,
        r.batch_linger_ms,
        r.join_linger_steps
    );
    for c in [&r.rag, &r.on_demand] {
        print_modes(c);
    }
    if let Some(c) = &r.on_demand_varied {
        println!(
            "  (OnDemandVaried: each generated token ends the turn with chance {:.3})",
            r.stop_chance
        );
        print_modes(c);
    }
    for sc in r.scheduler.iter().chain(&r.scheduler_varied_tools) {
        print_scheduler(sc, r.tool_latency_ms);
    }
    println!(
        "GRPO step: {} trajectories, {} response tokens, best (median) of the timed steps",
        r.grpo_trajectories, r.grpo_response_tokens
    );
    println!(
        "  ours {:.1} ({:.1}) ms, PyTorch {:.1} ({:.1}) ms: ratio {:.2}; after one step the weights differ by ≤ {:.2e}, the updates by {:.2e} (relative)",
        r.grpo_step_ms,
        r.grpo_step_median_ms,
        r.torch_grpo_step_ms,
        r.torch_grpo_step_median_ms,
        r.grpo_step_ratio,
        r.grpo_max_weight_diff,
        r.grpo_update_rel_diff
    );
}

fn print_scheduler(sc: &SchedulerRuns, tool_ms: f64) {
    println!(
        "  scheduler alone (scripted policy, {:.1} ms a decode step whatever the batch, {:.1} tokens a turn, no cap on a call, tools {:.0}–{:.0} ms): async {:.2}x sync; early_search_start {:.2}x async without it; continuous batching {:.2}x sync, {:.2}x the longest trajectory's own chain ({:.0} ms)",
        sc.step_ms,
        sc.mean_turn_tokens,
        tool_ms * (1.0 - sc.tool_jitter),
        tool_ms * (1.0 + sc.tool_jitter),
        sc.async_speedup,
        sc.early_start_speedup,
        sc.continuous_speedup,
        sc.continuous.wall_ms / sc.critical_path_ms,
        sc.critical_path_ms
    );
    for (name, m) in [
        ("async", &sc.async_run),
        ("early", &sc.async_early),
        ("cont", &sc.continuous),
        ("sync", &sc.sync_run),
    ] {
        print_run(name, m);
    }
}

fn print_modes(c: &ModeComparison) {
    println!(
        "  {:?}: async speedup {:.2}x, continuous batching {:.2}x (at most {:.2}x for any schedule)",
        c.workload, c.async_speedup, c.continuous_speedup, c.async_bound
    );
    for (name, m) in [
        ("async", &c.async_run),
        ("cont", &c.continuous_run),
        ("sync", &c.sync_run),
    ] {
        print_run(name, m);
    }
}

fn print_run(name: &str, m: &ModeRun) {
    println!(
        "    {name:<5} {:>8.1} ms  (generate {:.1} ms in {} calls, {} overlapped; tools waited {:.1} ms over {} calls; {} tokens)",
        m.wall_ms,
        m.generate_ms,
        m.generate_calls,
        m.overlapped_calls,
        m.tool_wait_ms,
        m.tool_calls,
        m.generated_tokens
    );
}
