//! The rollout engine: drives many conversations through one `Policy` with
//! search tools in the loop.
//!
//! The model stays on the calling thread (policies are not `Sync`); searches
//! run as tokio tasks and report back over a channel. In async mode each
//! trajectory moves on its own: a finished turn launches its search at once
//! (with `early_search_start`, the decode step its row finishes, through
//! `Policy::generate_streaming`, while the call's longer rows go on), and
//! every generation call batches whatever is ready. In sync mode (the seed's
//! scheme) a round generates for all, then runs all searches, then starts
//! the next round. With `continuous_batching` (async), generation is one
//! running decode that sessions join as their searches return and leave the
//! step their turn ends (`Policy::decode_step`).

use super::config::{RolloutConfig, RolloutMode};
use super::prompts::Prompts;
use super::search_turn::{SearchCall, guarded_search, push_search_result};
use super::trajectory::{EndReason, RolloutRequest, RolloutStats, Trajectory, TurnRecord};
use crate::policy::{FinishReason, Join, Left, Policy, SampleParams, Segment, TurnOutput};
use crate::protocol::{Action, parse_action};
use crate::tools::{ImageQuery, SearchTools, ToolObservation};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

pub struct RolloutEngine<T: SearchTools + 'static> {
    cfg: RolloutConfig,
    prompts: Arc<Prompts>,
    tools: Arc<T>,
    handle: Handle,
    /// A search that has not answered by then becomes an error observation.
    tool_timeout: Duration,
}

enum State {
    Ready,
    /// In the policy's continuous decode, which holds the session.
    Decoding,
    Waiting,
    Done(EndReason),
}

struct Slot<S> {
    /// `None` while a continuous decode holds it.
    session: Option<S>,
    state: State,
    /// The token budget of the turn being decoded.
    budget: usize,
    turns: Vec<TurnRecord>,
    image_searches: usize,
    text_searches: usize,
    tool_errors: usize,
    response_tokens: usize,
    observations: Vec<String>,
}

/// A slot's counts before a turn: all [`RolloutEngine::next_step`] needs,
/// copied out so it can judge a turn while the sessions are generating.
#[derive(Clone, Copy)]
struct Counts {
    turns: usize,
    response_tokens: usize,
    image_searches: usize,
    text_searches: usize,
}

impl<S> Slot<S> {
    fn session(&mut self) -> &mut S {
        self.session
            .as_mut()
            .expect("only a continuous decode takes a session, and it hands it back")
    }
}

impl Counts {
    fn of<S>(slot: &Slot<S>) -> Self {
        Self {
            turns: slot.turns.len(),
            response_tokens: slot.response_tokens,
            image_searches: slot.image_searches,
            text_searches: slot.text_searches,
        }
    }
}

enum Next {
    End(EndReason),
    Search(Action),
}

struct ToolDone {
    slot: usize,
    image: bool,
    obs: ToolObservation,
    took: Duration,
}

impl<T: SearchTools + 'static> RolloutEngine<T> {
    /// `handle` must belong to a multi-threaded runtime, and `run` must not
    /// be called from one of its worker threads.
    pub fn new(cfg: RolloutConfig, prompts: Arc<Prompts>, tools: Arc<T>, handle: Handle) -> Self {
        Self {
            cfg,
            prompts,
            tools,
            handle,
            tool_timeout: Duration::from_secs(300),
        }
    }

    pub fn with_tool_timeout(mut self, timeout: Duration) -> Self {
        self.tool_timeout = timeout;
        self
    }

    pub fn config(&self) -> &RolloutConfig {
        &self.cfg
    }

    /// Rolls out every request to the end; `seed` makes sampling
    /// reproducible (exactly so in sync mode, where batches do not depend on
    /// tool timing).
    pub fn run<P: Policy>(
        &self,
        policy: &mut P,
        requests: &[RolloutRequest],
        seed: u64,
    ) -> Result<(Vec<Trajectory>, RolloutStats)> {
        let start = Instant::now();
        let mut stats = RolloutStats::default();
        let mut slots = Vec::with_capacity(requests.len());
        for (i, req) in requests.iter().enumerate() {
            let text = self
                .prompts
                .first_turn(&req.question, self.cfg.max_rounds)?;
            let session = policy
                .open(&[Segment::Image(req.image.clone()), Segment::Text(text)])
                .with_context(|| format!("opening rollout {i} ({})", req.id))?;
            slots.push(Slot {
                session: Some(session),
                state: State::Ready,
                budget: 0,
                turns: Vec::new(),
                image_searches: 0,
                text_searches: 0,
                tool_errors: 0,
                response_tokens: 0,
                observations: Vec::new(),
            });
        }
        if self.cfg.mode == RolloutMode::Async && self.cfg.continuous_batching {
            self.run_continuous(policy, &mut slots, requests, seed, &mut stats)?;
        } else {
            self.run_calls(policy, &mut slots, requests, seed, &mut stats)?;
        }
        stats.wall = start.elapsed();
        let trajectories = slots
            .into_iter()
            .map(|mut s| Trajectory {
                transcript: policy.transcript(s.session()).clone(),
                end: match s.state {
                    State::Done(r) => r,
                    _ => unreachable!("loop ends when every slot is done"),
                },
                turns: s.turns,
                image_searches: s.image_searches,
                text_searches: s.text_searches,
                tool_errors: s.tool_errors,
                observations: s.observations,
            })
            .collect();
        Ok((trajectories, stats))
    }

    /// Sync, and async in whole generation calls: each call's sessions
    /// decode together until the last of them is done.
    fn run_calls<P: Policy>(
        &self,
        policy: &mut P,
        slots: &mut [Slot<P::Session>],
        requests: &[RolloutRequest],
        seed: u64,
        stats: &mut RolloutStats,
    ) -> Result<()> {
        let (tx, rx) = mpsc::channel::<ToolDone>();
        let mut in_flight = 0usize;
        let mut call = 0u64;
        loop {
            // Take in whatever searches have finished; sync mode waits for all.
            let sync = self.cfg.mode == RolloutMode::Sync;
            let arrived = self.take_results(
                policy,
                slots,
                &rx,
                &mut in_flight,
                stats,
                requests,
                |slots| sync || !any_ready(slots),
            )?;
            if self.cfg.mode == RolloutMode::Async && arrived {
                self.linger(policy, slots, &rx, &mut in_flight, stats, requests)?;
            }
            let ready: Vec<usize> = (0..slots.len())
                .filter(|&i| matches!(slots[i].state, State::Ready))
                .collect();
            if ready.is_empty() {
                if in_flight == 0 {
                    break;
                }
                continue;
            }
            let mut launches = Vec::new();
            // Async: one generation call per pass, so trajectories whose
            // searches finished meanwhile join the next call instead of
            // waiting behind the rest of the ready set.
            let mut batches = self.batches(slots, ready);
            if self.cfg.mode == RolloutMode::Async {
                batches.truncate(1);
            }
            for batch in batches {
                let budget = batch.0;
                let idx = batch.1;
                let params = SampleParams {
                    temperature: self.cfg.temperature,
                    top_p: self.cfg.top_p,
                    top_k: self.cfg.top_k,
                    max_new_tokens: budget,
                };
                if in_flight > 0 {
                    stats.overlapped_calls += 1;
                }
                let t0 = Instant::now();
                // `early_search_start`: a search starts the step its turn's
                // row finishes, not when the call's longest row does.
                let mut started = vec![false; idx.len()];
                let outs = if self.cfg.mode == RolloutMode::Async && self.cfg.early_search_start {
                    let counts: Vec<Counts> = idx.iter().map(|&i| Counts::of(&slots[i])).collect();
                    let mut sessions = pick_sessions(slots, &idx, Slot::session);
                    policy.generate_streaming(
                        &mut sessions,
                        &params,
                        mix(seed, call),
                        &mut |k, out| {
                            if let (Some(c), Some(false)) = (counts.get(k), started.get(k))
                                && let Next::Search(action) = self.next_step(c, out, budget)
                            {
                                self.launch(idx[k], action, requests, &tx);
                                started[k] = true;
                            }
                        },
                    )?
                } else {
                    let mut sessions = pick_sessions(slots, &idx, Slot::session);
                    policy.generate(&mut sessions, &params, mix(seed, call))?
                };
                stats.generate += t0.elapsed();
                stats.generate_calls += 1;
                call += 1;
                anyhow::ensure!(
                    outs.len() == idx.len(),
                    "policy returned {} turns for {} sessions",
                    outs.len(),
                    idx.len()
                );
                for ((&i, out), early) in idx.iter().zip(outs).zip(started) {
                    let query = self.take_turn(&mut slots[i], out, budget);
                    if early {
                        // Judged by the same rule on the same turn, so a
                        // search started early is one `take_turn` asks for.
                        anyhow::ensure!(
                            query.is_some(),
                            "rollout {i}: the policy streamed a turn other than the one it returned"
                        );
                        in_flight += 1;
                        stats.tool_calls += 1;
                    } else if let Some(query) = query {
                        launches.push((i, query));
                    }
                }
                // Async: the rest start as soon as the call is done.
                if self.cfg.mode == RolloutMode::Async {
                    for (i, q) in launches.drain(..) {
                        self.launch(i, q, requests, &tx);
                        in_flight += 1;
                        stats.tool_calls += 1;
                    }
                }
            }
            for (i, q) in launches {
                self.launch(i, q, requests, &tx);
                in_flight += 1;
                stats.tool_calls += 1;
            }
        }
        Ok(())
    }

    /// Async with continuous batching: one decode step per pass. Sessions
    /// whose search has returned join the running decode at the next step,
    /// and a session leaves it, launching its search, the step its turn
    /// ends.
    fn run_continuous<P: Policy>(
        &self,
        policy: &mut P,
        slots: &mut [Slot<P::Session>],
        requests: &[RolloutRequest],
        seed: u64,
        stats: &mut RolloutStats,
    ) -> Result<()> {
        let (tx, rx) = mpsc::channel::<ToolDone>();
        let mut in_flight = 0usize;
        let mut step = 0u64;
        // The step since which sessions have been ready to join.
        let mut ready_since: Option<u64> = None;
        let params = SampleParams {
            temperature: self.cfg.temperature,
            top_p: self.cfg.top_p,
            top_k: self.cfg.top_k,
            max_new_tokens: self.cfg.max_turn_tokens,
        };
        let cap = self.call_cap();
        loop {
            let decoding = slots
                .iter()
                .filter(|s| matches!(s.state, State::Decoding))
                .count();
            anyhow::ensure!(
                policy.decoding() == decoding,
                "the policy holds {} sessions in its decode, the engine gave it {decoding}",
                policy.decoding()
            );
            // Block only when nothing decodes and nothing can join.
            self.take_results(
                policy,
                slots,
                &rx,
                &mut in_flight,
                stats,
                requests,
                |slots| decoding == 0 && !any_ready(slots),
            )?;
            let mut ready: Vec<usize> = (0..slots.len())
                .filter(|&i| matches!(slots[i].state, State::Ready))
                .collect();
            ready.sort_by_key(|&i| (slots[i].turns.len(), i));
            let free = cap.saturating_sub(decoding);
            // `join_linger_steps`: while rows decode, joiners that would not
            // fill the decode wait for others, so they share one prefill.
            let hold = decoding > 0 && !ready.is_empty() && ready.len() < free && {
                let since = *ready_since.get_or_insert(step);
                step - since < self.cfg.join_linger_steps
            };
            if hold {
                ready.clear();
            } else {
                ready_since = None;
            }
            ready.truncate(free);
            if ready.is_empty() && decoding == 0 {
                if in_flight == 0 {
                    break;
                }
                continue;
            }
            let mut join = Vec::with_capacity(ready.len());
            for i in ready {
                let slot = &mut slots[i];
                slot.budget = self.budget(slot);
                slot.state = State::Decoding;
                join.push(Join {
                    key: i,
                    session: slot.session.take().expect("a ready slot holds its session"),
                    max_new_tokens: slot.budget,
                });
            }
            if in_flight > 0 {
                stats.overlapped_calls += 1;
            }
            let t0 = Instant::now();
            let left = policy.decode_step(join, &params, mix(seed, step))?;
            stats.generate += t0.elapsed();
            stats.generate_calls += 1;
            step += 1;
            for Left { key, session, turn } in left {
                let slot = slots
                    .get_mut(key)
                    .filter(|s| matches!(s.state, State::Decoding))
                    .with_context(|| {
                        format!("the policy handed back session {key}, which is not decoding")
                    })?;
                slot.session = Some(session);
                let budget = slot.budget;
                if let Some(query) = self.take_turn(slot, turn, budget) {
                    self.launch(key, query, requests, &tx);
                    in_flight += 1;
                    stats.tool_calls += 1;
                }
            }
        }
        Ok(())
    }

    /// A slot's token budget for its next turn.
    fn budget<S>(&self, slot: &Slot<S>) -> usize {
        let left = self
            .cfg
            .max_response_tokens
            .saturating_sub(slot.response_tokens);
        self.cfg.max_turn_tokens.min(left)
    }

    /// Takes in the search results that have arrived, blocking for the
    /// next one while searches are in flight and `wait` says so (asked
    /// again after each result). Whether any arrived.
    #[allow(clippy::too_many_arguments)]
    fn take_results<P: Policy>(
        &self,
        policy: &mut P,
        slots: &mut [Slot<P::Session>],
        rx: &mpsc::Receiver<ToolDone>,
        in_flight: &mut usize,
        stats: &mut RolloutStats,
        requests: &[RolloutRequest],
        wait: impl Fn(&[Slot<P::Session>]) -> bool,
    ) -> Result<bool> {
        let mut arrived = false;
        loop {
            let msg = if *in_flight > 0 && wait(slots) {
                let t0 = Instant::now();
                let m = rx.recv().context("search task vanished")?;
                stats.tool_wait += t0.elapsed();
                m
            } else {
                match rx.try_recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            };
            self.take_result(policy, slots, msg, in_flight, stats, requests)?;
            arrived = true;
        }
        Ok(arrived)
    }

    /// Takes in search results that follow each other closely (siblings
    /// launched by the same call), until the next call would be full, the
    /// gap to the next result exceeds `batch_linger_ms`, or ten gaps' worth
    /// of time has passed. Called only when a result has just arrived:
    /// lingering over a ready set nobody is adding to would idle the model.
    fn linger<P: Policy>(
        &self,
        policy: &mut P,
        slots: &mut [Slot<P::Session>],
        rx: &mpsc::Receiver<ToolDone>,
        in_flight: &mut usize,
        stats: &mut RolloutStats,
        requests: &[RolloutRequest],
    ) -> Result<()> {
        let gap = Duration::from_millis(self.cfg.batch_linger_ms);
        if gap.is_zero() || *in_flight == 0 {
            return Ok(());
        }
        let cap = self.call_cap();
        let t0 = Instant::now();
        let until = t0 + 10 * gap;
        while *in_flight > 0
            && slots
                .iter()
                .filter(|s| matches!(s.state, State::Ready))
                .count()
                < cap
        {
            let now = Instant::now();
            if now >= until {
                break;
            }
            match rx.recv_timeout(gap.min(until - now)) {
                Ok(msg) => self.take_result(policy, slots, msg, in_flight, stats, requests)?,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => anyhow::bail!("search task vanished"),
            }
        }
        stats.tool_wait += t0.elapsed();
        Ok(())
    }

    /// Books a finished search and shows it to its trajectory.
    fn take_result<P: Policy>(
        &self,
        policy: &mut P,
        slots: &mut [Slot<P::Session>],
        msg: ToolDone,
        in_flight: &mut usize,
        stats: &mut RolloutStats,
        requests: &[RolloutRequest],
    ) -> Result<()> {
        *in_flight -= 1;
        stats.tool_busy += msg.took;
        let i = msg.slot;
        self.deliver(policy, &mut slots[i], msg, requests)
    }

    /// Most sessions in one generation call.
    fn call_cap(&self) -> usize {
        if self.cfg.max_batch == 0 {
            usize::MAX
        } else {
            self.cfg.max_batch
        }
    }

    /// Groups ready slots by their token budget for this turn (one
    /// `SampleParams` per call), capped at `max_batch` sessions per call.
    /// Within a budget, slots at the same round go together, earliest round
    /// first: their caches and new turns are alike in length, so a call pads
    /// little, and first turns reach their searches soonest.
    fn batches<S>(&self, slots: &[Slot<S>], mut ready: Vec<usize>) -> Vec<(usize, Vec<usize>)> {
        ready.sort_by_key(|&i| (slots[i].turns.len(), i));
        let mut by_budget: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in ready {
            by_budget.entry(self.budget(&slots[i])).or_default().push(i);
        }
        let cap = self.call_cap();
        let mut out = Vec::new();
        for (budget, idx) in by_budget.into_iter().rev() {
            for chunk in idx.chunks(cap) {
                // `pick_sessions` walks the slots in order.
                let mut chunk = chunk.to_vec();
                chunk.sort_unstable();
                out.push((budget, chunk));
            }
        }
        out
    }

    /// Records a generated turn and decides what happens next; returns the
    /// search to launch, if any.
    fn take_turn<S>(&self, slot: &mut Slot<S>, out: TurnOutput, budget: usize) -> Option<Action> {
        let next = self.next_step(&Counts::of(slot), &out, budget);
        slot.response_tokens += out.token_ids.len();
        let action = parse_action(&out.text);
        slot.turns.push(TurnRecord {
            text: out.text,
            token_ids: out.token_ids,
            logprobs: out.logprobs,
            finish: out.finish,
            action,
        });
        match next {
            Next::End(reason) => {
                slot.state = State::Done(reason);
                None
            }
            Next::Search(action) => {
                slot.state = State::Waiting;
                match &action {
                    Action::ImageSearch => slot.image_searches += 1,
                    Action::TextSearch(_) => slot.text_searches += 1,
                    Action::Answer(_) => unreachable!("an answer ends the trajectory"),
                }
                Some(action)
            }
        }
    }

    /// What a trajectory does after `out`, from its counts before it: the
    /// one rule for a turn, whether judged as its row finishes (async) or
    /// after the call.
    fn next_step(&self, c: &Counts, out: &TurnOutput, budget: usize) -> Next {
        let cfg = &self.cfg;
        if out.finish == FinishReason::Length {
            return Next::End(if budget < cfg.max_turn_tokens {
                EndReason::ResponseTokenLimit
            } else {
                EndReason::TurnTokenLimit
            });
        }
        match parse_action(&out.text) {
            None => Next::End(EndReason::NoAction),
            Some(Action::Answer(_)) => Next::End(EndReason::Answered),
            Some(_) if c.turns + 1 >= cfg.max_rounds => Next::End(EndReason::RoundLimit),
            Some(_) if c.response_tokens + out.token_ids.len() >= cfg.max_response_tokens => {
                Next::End(EndReason::ResponseTokenLimit)
            }
            Some(Action::ImageSearch) if c.image_searches >= cfg.max_image_searches => {
                Next::End(EndReason::ImageSearchLimit)
            }
            Some(Action::TextSearch(_)) if c.text_searches >= cfg.max_text_searches => {
                Next::End(EndReason::TextSearchLimit)
            }
            Some(action) => Next::Search(action),
        }
    }

    /// Runs a search as a task; it always reports back, even if the tool
    /// panics or stalls.
    fn launch(
        &self,
        slot: usize,
        action: Action,
        requests: &[RolloutRequest],
        tx: &mpsc::Sender<ToolDone>,
    ) {
        let req = &requests[slot];
        let call = match action {
            Action::ImageSearch => SearchCall::Image(ImageQuery {
                bytes: req.image.clone(),
                url: req.image_url.clone(),
            }),
            Action::TextSearch(q) => SearchCall::Text(q),
            Action::Answer(_) => unreachable!("answers launch no search"),
        };
        let image = call.is_image();
        let search = guarded_search(
            &self.handle,
            Arc::clone(&self.tools),
            call,
            self.tool_timeout,
            Arc::clone(&self.prompts),
        );
        let tx = tx.clone();
        self.handle.spawn(async move {
            let t0 = Instant::now();
            let obs = search.await;
            let _ = tx.send(ToolDone {
                slot,
                image,
                obs,
                took: t0.elapsed(),
            });
        });
    }

    /// Shows a search's results to the model as a new user turn.
    fn deliver<P: Policy>(
        &self,
        policy: &mut P,
        slot: &mut Slot<P::Session>,
        done: ToolDone,
        requests: &[RolloutRequest],
    ) -> Result<()> {
        let question = &requests[done.slot].question;
        slot.tool_errors += push_search_result(
            policy,
            slot.session(),
            &self.prompts,
            &done.obs,
            done.image,
            question,
        )
        .with_context(|| format!("rollout {}: cannot append the search result", done.slot))?;
        slot.observations.push(done.obs.display_text());
        slot.state = State::Ready;
        Ok(())
    }
}

fn any_ready<S>(slots: &[Slot<S>]) -> bool {
    slots.iter().any(|s| matches!(s.state, State::Ready))
}

/// Mutable borrows of the sessions of `items` at `idx` (distinct, ascending:
/// anything else is a bug, caught here rather than as a short batch).
pub(crate) fn pick_sessions<'a, T, S>(
    items: &'a mut [T],
    idx: &[usize],
    session: impl Fn(&'a mut T) -> &'a mut S,
) -> Vec<&'a mut S> {
    assert!(
        idx.windows(2).all(|w| w[0] < w[1]),
        "pick_sessions needs distinct ascending indices, got {idx:?}"
    );
    let mut out = Vec::with_capacity(idx.len());
    let mut want = idx.iter().peekable();
    for (i, item) in items.iter_mut().enumerate() {
        if want.peek() == Some(&&i) {
            out.push(session(item));
            want.next();
        }
    }
    assert_eq!(out.len(), idx.len(), "an index in {idx:?} is out of range");
    out
}

/// A well-mixed per-call seed (splitmix64).
pub fn mix(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
