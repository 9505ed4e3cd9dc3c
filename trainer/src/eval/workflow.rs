//! The paper's three workflows on a dataset split, each question rolled out
//! once:
//! - `direct`: answer without search. The first turn offers no search
//!   ([`Prompts::direct_first_turn`]). A search the model asks for anyway is
//!   not executed: it gets one more turn saying search is unavailable
//!   ([`Prompts::search_unavailable`]), and a second search ends the
//!   trajectory unanswered. Why the extra turn: a model trained to search
//!   asks for one out of habit; cutting it off at once would score that habit
//!   rather than what it knows, which is what direct answering measures.
//! - `rag`: the fixed pipeline. The environment writes the first assistant
//!   turn (an image search on the input image, `eval.rag.image_turn`), then
//!   the model writes a text search. If it does not (or writes an empty
//!   query, or runs out of tokens), its turn is set aside
//!   (kept in [`Outcome::discarded`]) and a text search for the question
//!   itself is forced: the query a fixed pipeline without query rewriting
//!   sends. Then the model answers.
//! - `on-demand`: the normal rollout ([`RolloutEngine`]) with the policy
//!   deciding when to search.
//!
//! Direct and RAG run in synchronous rounds (all generate, then all
//! searches); forced turns go in through `push_assistant`.

use super::config::RagConfig;
use super::metrics::{Category, QuestionResult};
use crate::data::Sample;
use crate::policy::{FinishReason, Policy, SampleParams, Segment, TurnOutput};
use crate::protocol::{Action, parse_action};
use crate::reward::{AccuracyMode, RewardConfig, accuracy, score};
use crate::rollout::{
    EndReason, Prompts, RolloutConfig, RolloutEngine, RolloutRequest, SearchCall, Trajectory,
    TurnRecord, guarded_search, mix, pick_sessions, push_search_result,
};
use crate::tools::{ImageQuery, SearchTools, ToolObservation};
use anyhow::{Context, Result, bail, ensure};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workflow {
    Direct,
    Rag,
    OnDemand,
}

impl Workflow {
    pub const ALL: [Workflow; 3] = [Workflow::Direct, Workflow::Rag, Workflow::OnDemand];

    pub fn name(self) -> &'static str {
        match self {
            Workflow::Direct => "direct",
            Workflow::Rag => "rag",
            Workflow::OnDemand => "on-demand",
        }
    }
}

impl std::str::FromStr for Workflow {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Workflow::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .with_context(|| format!("unknown workflow {s:?} (expected direct, rag or on-demand)"))
    }
}

impl std::fmt::Display for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened on one question.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Turns include the environment's forced ones (with no token ids);
    /// search counts are the searches actually executed.
    pub trajectory: Trajectory,
    /// Model turns the workflow set aside (RAG: a turn that was not a text
    /// search, replaced by the forced one).
    pub discarded: Vec<String>,
}

/// Runs workflows over one policy and one set of search tools.
pub struct WorkflowRunner<T: SearchTools + 'static> {
    pub rollout: RolloutConfig,
    pub rag: RagConfig,
    pub prompts: Arc<Prompts>,
    pub tools: Arc<T>,
    pub handle: Handle,
    pub tool_timeout: Duration,
    /// Questions rolled out together.
    pub chunk: usize,
    pub seed: u64,
    /// Called with the number of questions finished after each chunk.
    pub on_progress: Option<Box<dyn Fn(usize)>>,
}

/// A conversation the sync driver is moving.
struct Live<S> {
    session: S,
    turns: Vec<TurnRecord>,
    image_searches: usize,
    text_searches: usize,
    tool_errors: usize,
    response_tokens: usize,
    end: Option<EndReason>,
    discarded: Vec<String>,
    observations: Vec<String>,
}

impl<S> Live<S> {
    fn new(session: S) -> Self {
        Self {
            session,
            turns: Vec::new(),
            image_searches: 0,
            text_searches: 0,
            tool_errors: 0,
            response_tokens: 0,
            end: None,
            discarded: Vec::new(),
            observations: Vec::new(),
        }
    }

    fn last_action(&self) -> Option<&Action> {
        self.turns.last().and_then(|t| t.action.as_ref())
    }

    /// Why a model turn that did not act as hoped ends the trajectory, if it
    /// does on its own (a cut-off turn, no action).
    fn length_end(&self, budget_left: usize, max_turn: usize) -> Option<EndReason> {
        let t = self.turns.last()?;
        (t.finish == FinishReason::Length).then_some(if budget_left < max_turn {
            EndReason::ResponseTokenLimit
        } else {
            EndReason::TurnTokenLimit
        })
    }
}

fn forced_turn(text: &str) -> TurnRecord {
    TurnRecord {
        text: text.to_string(),
        token_ids: Vec::new(),
        logprobs: Vec::new(),
        finish: FinishReason::Stop,
        action: parse_action(text),
    }
}

fn request(sample: &Sample) -> Result<RolloutRequest> {
    let image = sample
        .images
        .first()
        .with_context(|| format!("{}: no image", sample.id))?;
    Ok(RolloutRequest {
        id: sample.id.clone(),
        question: sample.question.clone(),
        image: image.clone(),
        image_url: sample.image_url.clone(),
    })
}

impl<T: SearchTools + 'static> WorkflowRunner<T> {
    /// Rolls out every sample once under `workflow`, in order.
    pub fn run<P: Policy>(
        &self,
        policy: &mut P,
        workflow: Workflow,
        samples: &[Sample],
    ) -> Result<Vec<Outcome>> {
        let mut out = Vec::with_capacity(samples.len());
        self.run_from(policy, workflow, samples, 0, &mut |_, done| {
            out.extend(done);
            Ok(())
        })?;
        Ok(out)
    }

    /// Rolls out the samples from chunk `first_chunk` on, handing each
    /// chunk's outcomes to `on_chunk` with the index of its first sample.
    /// Chunk k is seeded by k alone, so a run continued from a chunk gives
    /// the outcomes a run from the start gives there. An error from
    /// `on_chunk` ends the run.
    pub fn run_from<P: Policy>(
        &self,
        policy: &mut P,
        workflow: Workflow,
        samples: &[Sample],
        first_chunk: usize,
        on_chunk: &mut dyn FnMut(usize, Vec<Outcome>) -> Result<()>,
    ) -> Result<()> {
        ensure!(self.chunk > 0, "eval chunk must be at least 1");
        if workflow == Workflow::Rag {
            ensure!(
                self.rollout.max_rounds >= 3,
                "the rag workflow takes 3 turns (image search, text search, answer); rollout.max_rounds = {}",
                self.rollout.max_rounds
            );
        }
        let requests = samples.iter().map(request).collect::<Result<Vec<_>>>()?;
        for (k, chunk) in requests.chunks(self.chunk).enumerate().skip(first_chunk) {
            let seed = mix(self.seed, k as u64);
            let done = match workflow {
                Workflow::OnDemand => self.on_demand(policy, chunk, seed)?,
                Workflow::Direct => self.direct(policy, chunk, seed)?,
                Workflow::Rag => self.rag(policy, chunk, seed)?,
            };
            let start = k * self.chunk;
            on_chunk(start, done)?;
            if let Some(progress) = &self.on_progress {
                progress(start + chunk.len());
            }
        }
        Ok(())
    }

    fn on_demand<P: Policy>(
        &self,
        policy: &mut P,
        requests: &[RolloutRequest],
        seed: u64,
    ) -> Result<Vec<Outcome>> {
        let engine = RolloutEngine::new(
            self.rollout.clone(),
            Arc::clone(&self.prompts),
            Arc::clone(&self.tools),
            self.handle.clone(),
        )
        .with_tool_timeout(self.tool_timeout);
        let (trajectories, _) = engine.run(policy, requests, seed)?;
        Ok(trajectories
            .into_iter()
            .map(|trajectory| Outcome {
                trajectory,
                discarded: Vec::new(),
            })
            .collect())
    }

    fn direct<P: Policy>(
        &self,
        policy: &mut P,
        requests: &[RolloutRequest],
        seed: u64,
    ) -> Result<Vec<Outcome>> {
        let mut lives = Vec::with_capacity(requests.len());
        for (i, req) in requests.iter().enumerate() {
            let text = self.prompts.direct_first_turn(&req.question)?;
            let session = policy
                .open(&[Segment::Image(req.image.clone()), Segment::Text(text)])
                .with_context(|| format!("opening question {i}"))?;
            lives.push(Live::new(session));
        }
        let rounds = self.rollout.max_rounds.min(2);
        let mut call = 0u64;
        for round in 0..rounds {
            let live: Vec<usize> = (0..lives.len())
                .filter(|&i| lives[i].end.is_none())
                .collect();
            self.generate(policy, &mut lives, &live, seed, &mut call)?;
            for &i in &live {
                let l = &mut lives[i];
                if let Some(end) = self.model_turn_end(l) {
                    l.end = Some(end);
                    continue;
                }
                if round + 1 == rounds {
                    l.end = Some(EndReason::SearchUnavailable);
                    continue;
                }
                // A search: not executed; the model hears there is none.
                let text = self.prompts.search_unavailable(&requests[i].question)?;
                policy
                    .push_user(&mut l.session, &[Segment::Text(text)])
                    .with_context(|| format!("question {i}: search-unavailable turn"))?;
            }
        }
        Ok(self.finish(policy, lives))
    }

    fn rag<P: Policy>(
        &self,
        policy: &mut P,
        requests: &[RolloutRequest],
        seed: u64,
    ) -> Result<Vec<Outcome>> {
        let image_turn = &self.rag.image_turn;
        let mut lives = Vec::with_capacity(requests.len());
        for (i, req) in requests.iter().enumerate() {
            let session = self
                .open_with_image_turn(policy, req)
                .with_context(|| format!("opening question {i}"))?;
            let mut l = Live::new(session);
            l.turns.push(forced_turn(image_turn));
            l.image_searches = 1;
            lives.push(l);
        }
        // The forced image search, for every question.
        let calls = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    i,
                    SearchCall::Image(ImageQuery {
                        bytes: r.image.clone(),
                        url: r.image_url.clone(),
                    }),
                )
            })
            .collect();
        let image_obs = self.search_all(calls);
        for (i, obs) in &image_obs {
            let l = &mut lives[*i];
            l.tool_errors += push_search_result(
                policy,
                &mut l.session,
                &self.prompts,
                obs,
                true,
                &requests[*i].question,
            )
            .with_context(|| format!("question {i}: image results"))?;
            l.observations.push(obs.display_text());
        }
        let image_obs: BTreeMap<usize, ToolObservation> = image_obs.into_iter().collect();

        // The model's text search, or the forced one.
        let mut call = 0u64;
        let all: Vec<usize> = (0..lives.len()).collect();
        self.generate(policy, &mut lives, &all, seed, &mut call)?;
        let mut calls = Vec::new();
        for (i, req) in requests.iter().enumerate() {
            let l = &mut lives[i];
            let query = match l.last_action() {
                Some(Action::TextSearch(q))
                    if !q.is_empty()
                        && l.turns.last().map(|t| t.finish) == Some(FinishReason::Stop) =>
                {
                    q.clone()
                }
                _ => {
                    let own = l.turns.pop().expect("the model just took a turn");
                    l.discarded.push(own.text);
                    l.response_tokens -= own.token_ids.len();
                    let forced = format!(
                        "<reason>{}</reason><text_search>{}</text_search>",
                        self.rag.text_reason, req.question
                    );
                    // Policies cannot take a turn back: replay the
                    // conversation up to here, then force the search.
                    let mut session = self
                        .open_with_image_turn(policy, req)
                        .with_context(|| format!("reopening question {i}"))?;
                    push_search_result(
                        policy,
                        &mut session,
                        &self.prompts,
                        &image_obs[&i],
                        true,
                        &req.question,
                    )?;
                    policy.push_assistant(&mut session, &forced)?;
                    l.session = session;
                    l.turns.push(forced_turn(&forced));
                    req.question.clone()
                }
            };
            l.text_searches = 1;
            calls.push((i, SearchCall::Text(query)));
        }
        for (i, obs) in self.search_all(calls) {
            let l = &mut lives[i];
            l.tool_errors += push_search_result(
                policy,
                &mut l.session,
                &self.prompts,
                &obs,
                false,
                &requests[i].question,
            )
            .with_context(|| format!("question {i}: text results"))?;
            l.observations.push(obs.display_text());
        }

        // The answer.
        self.generate(policy, &mut lives, &all, seed, &mut call)?;
        for l in &mut lives {
            l.end = Some(self.model_turn_end(l).unwrap_or(EndReason::RoundLimit));
        }
        Ok(self.finish(policy, lives))
    }

    fn open_with_image_turn<P: Policy>(
        &self,
        policy: &mut P,
        req: &RolloutRequest,
    ) -> Result<P::Session> {
        let text = self
            .prompts
            .first_turn(&req.question, self.rollout.max_rounds)?;
        let mut session = policy.open(&[Segment::Image(req.image.clone()), Segment::Text(text)])?;
        policy.push_assistant(&mut session, &self.rag.image_turn)?;
        Ok(session)
    }

    /// How a model turn ends the trajectory on its own: an answer, no
    /// action, or a cut-off turn. `None`: it asked for a search.
    fn model_turn_end<S>(&self, l: &Live<S>) -> Option<EndReason> {
        let left = self
            .rollout
            .max_response_tokens
            .saturating_sub(l.response_tokens - l.turns.last().map_or(0, |t| t.token_ids.len()));
        if let Some(end) = l.length_end(left, self.rollout.max_turn_tokens) {
            return Some(end);
        }
        match l.last_action() {
            None => Some(EndReason::NoAction),
            Some(Action::Answer(_)) => Some(EndReason::Answered),
            Some(_) => None,
        }
    }

    /// One model turn for each of `idx`, batched by token budget and capped
    /// at `max_batch` sessions per call.
    fn generate<P: Policy>(
        &self,
        policy: &mut P,
        lives: &mut [Live<P::Session>],
        idx: &[usize],
        seed: u64,
        call: &mut u64,
    ) -> Result<()> {
        let cfg = &self.rollout;
        let mut by_budget: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &i in idx {
            let left = cfg
                .max_response_tokens
                .saturating_sub(lives[i].response_tokens);
            by_budget
                .entry(cfg.max_turn_tokens.min(left))
                .or_default()
                .push(i);
        }
        let cap = if cfg.max_batch == 0 {
            usize::MAX
        } else {
            cfg.max_batch
        };
        for (budget, group) in by_budget.into_iter().rev() {
            for chunk in group.chunks(cap) {
                let params = SampleParams {
                    temperature: cfg.temperature,
                    top_p: cfg.top_p,
                    top_k: cfg.top_k,
                    max_new_tokens: budget,
                };
                let outs: Vec<TurnOutput> = {
                    let mut sessions = pick_sessions(lives, chunk, |l| &mut l.session);
                    policy.generate(&mut sessions, &params, mix(seed, *call))?
                };
                *call += 1;
                if outs.len() != chunk.len() {
                    bail!(
                        "policy returned {} turns for {} sessions",
                        outs.len(),
                        chunk.len()
                    );
                }
                for (&i, out) in chunk.iter().zip(outs) {
                    let l = &mut lives[i];
                    l.response_tokens += out.token_ids.len();
                    l.turns.push(TurnRecord {
                        action: parse_action(&out.text),
                        text: out.text,
                        token_ids: out.token_ids,
                        logprobs: out.logprobs,
                        finish: out.finish,
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs the searches concurrently; every one answers (errors and
    /// timeouts become error observations).
    fn search_all(&self, calls: Vec<(usize, SearchCall)>) -> Vec<(usize, ToolObservation)> {
        let searches = calls.into_iter().map(|(i, call)| {
            let search = guarded_search(
                &self.handle,
                Arc::clone(&self.tools),
                call,
                self.tool_timeout,
                Arc::clone(&self.prompts),
            );
            async move { (i, search.await) }
        });
        self.handle.block_on(futures::future::join_all(searches))
    }

    fn finish<P: Policy>(&self, policy: &P, lives: Vec<Live<P::Session>>) -> Vec<Outcome> {
        lives
            .into_iter()
            .map(|l| Outcome {
                trajectory: Trajectory {
                    transcript: policy.transcript(&l.session).clone(),
                    turns: l.turns,
                    image_searches: l.image_searches,
                    text_searches: l.text_searches,
                    tool_errors: l.tool_errors,
                    end: l.end.unwrap_or(EndReason::RoundLimit),
                    observations: l.observations,
                },
                discarded: l.discarded,
            })
            .collect()
    }
}

/// A question's result: the answer of the final turn, EM and SubEM against
/// the gold answers, reward and format as training scores them, and the
/// executed searches.
pub fn question_result(
    sample: &Sample,
    outcome: &Outcome,
    reward: &RewardConfig,
) -> QuestionResult {
    let t = &outcome.trajectory;
    let turns = t.turn_texts();
    let golds = sample.gold.all();
    let scored = score(&turns, t.searches(), &sample.gold, reward);
    let hit = |mode| {
        scored
            .answer
            .as_deref()
            .is_some_and(|a| accuracy(a, &golds, mode) == 1.0)
    };
    QuestionResult {
        id: sample.id.clone(),
        data_source: sample.data_source.clone(),
        category: Some(Category::from_data_source(&sample.data_source)),
        question: sample.question.clone(),
        exact_match: hit(AccuracyMode::Em),
        sub_em: hit(AccuracyMode::Subem),
        answer: scored.answer,
        golds,
        judge: None,
        image_searches: t.image_searches,
        text_searches: t.text_searches,
        tool_errors: t.tool_errors,
        reward: scored.reward,
        format: scored.format,
        turns: turns.iter().map(|s| s.to_string()).collect(),
        observations: t.observations.clone(),
    }
}
