//! The scripted actions of a bench batch: the policy generates each turn,
//! then the turn's text becomes the next action of the session's pattern.

use crate::policy::{
    FinishReason, Join, Left, Policy, SampleParams, Segment, Transcript, TurnOutput,
};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::HashMap;

pub(super) const ANSWER: &str = "<reason>r</reason><answer>a</answer>";
pub(super) const IMAGE: &str = "<reason>r</reason><search><img></search>";
pub(super) const TEXT: &str = "<reason>r</reason><text_search>landmark</text_search>";
/// The paper's valid formats.
pub(super) const PATTERNS: [&[&str]; 4] = [
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
