//! A policy that "generates" scripted turn texts, for testing the rollout
//! engine without a model. It can charge a generation cost per token of the
//! longest sequence in a batch, as batched decoding does, and hands each
//! row on as its tokens are done.

use super::chat::{ChatTokens, IM_END};
use crate::policy::{
    FinishReason, Join, Left, Policy, SampleParams, Segment, Transcript, TurnOutput,
};
use anyhow::Result;
use std::sync::Arc;
use std::time::Duration;

/// Picks the turn texts of a conversation from its first user turn.
pub type Script = dyn Fn(&str) -> Vec<String> + Send + Sync;

pub struct ScriptedSession {
    transcript: Transcript,
    turns: Vec<String>,
    next: usize,
}

pub struct ScriptedPolicy {
    script: Arc<Script>,
    per_token: Duration,
    /// Sizes of the generation calls, in order.
    pub calls: Vec<usize>,
    /// Continuous decode: each step, the rows decoding after the joiners
    /// came in.
    pub steps: Vec<usize>,
    decoding: Vec<Decoding>,
}

/// A row of the continuous decode: its whole turn is known; it leaves when
/// its tokens are all "decoded".
struct Decoding {
    key: usize,
    session: ScriptedSession,
    turn: TurnOutput,
    decoded: usize,
}

impl ScriptedPolicy {
    pub fn new(script: impl Fn(&str) -> Vec<String> + Send + Sync + 'static) -> Self {
        Self {
            script: Arc::new(script),
            per_token: Duration::ZERO,
            calls: Vec::new(),
            steps: Vec::new(),
            decoding: Vec::new(),
        }
    }

    /// Every generation call sleeps `per_token` × the longest output; a
    /// continuous decode step sleeps `per_token`, whatever the rows.
    pub fn with_cost(mut self, per_token: Duration) -> Self {
        self.per_token = per_token;
        self
    }
}

/// The log-prob the scripted policy reports for its k-th generated token.
pub fn scripted_logprob(k: usize) -> f32 {
    -0.25 - (k % 7) as f32 * 0.125
}

/// The session's next scripted turn, cut at `max_new` tokens, recorded in
/// its transcript.
fn next_turn(s: &mut ScriptedSession, max_new: usize) -> TurnOutput {
    let text = s
        .turns
        .get(s.next)
        .cloned()
        .unwrap_or_else(|| "(script exhausted)".into());
    s.next += 1;
    let mut ids = ChatTokens::text(&text);
    ids.push(IM_END);
    let finish = if ids.len() > max_new {
        ids.truncate(max_new);
        FinishReason::Length
    } else {
        FinishReason::Stop
    };
    let logprobs: Vec<f32> = (0..ids.len()).map(scripted_logprob).collect();
    ChatTokens::assistant_prefix(&mut s.transcript);
    ChatTokens::generated(&mut s.transcript, &ids, &logprobs);
    let text = ChatTokens::decode(ids.strip_suffix(&[IM_END]).unwrap_or(&ids));
    TurnOutput {
        text,
        token_ids: ids,
        logprobs,
        finish,
    }
}

impl Policy for ScriptedPolicy {
    type Session = ScriptedSession;

    fn open(&mut self, user: &[Segment]) -> Result<ScriptedSession> {
        let text: String = user
            .iter()
            .filter_map(|s| match s {
                Segment::Text(t) => Some(t.as_str()),
                Segment::Image(_) => None,
            })
            .collect();
        let mut transcript = Transcript::default();
        ChatTokens::user_turn(&mut transcript, user)?;
        Ok(ScriptedSession {
            transcript,
            turns: (self.script)(&text),
            next: 0,
        })
    }

    fn push_user(&mut self, s: &mut ScriptedSession, user: &[Segment]) -> Result<()> {
        ChatTokens::user_turn(&mut s.transcript, user)
    }

    fn generate(
        &mut self,
        sessions: &mut [&mut ScriptedSession],
        p: &SampleParams,
        seed: u64,
    ) -> Result<Vec<TurnOutput>> {
        self.generate_streaming(sessions, p, seed, &mut |_, _| {})
    }

    /// Rows finish in order of length, as batched decoding ends them; with
    /// a cost, each after its own tokens' worth of time.
    fn generate_streaming(
        &mut self,
        sessions: &mut [&mut ScriptedSession],
        p: &SampleParams,
        _seed: u64,
        on_done: &mut dyn FnMut(usize, &TurnOutput),
    ) -> Result<Vec<TurnOutput>> {
        self.calls.push(sessions.len());
        let outs: Vec<TurnOutput> = sessions
            .iter_mut()
            .map(|s| next_turn(s, p.max_new_tokens))
            .collect();
        let mut order: Vec<usize> = (0..outs.len()).collect();
        order.sort_by_key(|&k| (outs[k].token_ids.len(), k));
        let mut decoded = 0;
        for k in order {
            let len = outs[k].token_ids.len();
            if !self.per_token.is_zero() {
                std::thread::sleep(self.per_token * (len - decoded) as u32);
            }
            decoded = len;
            on_done(k, &outs[k]);
        }
        Ok(outs)
    }

    /// One token of every row per step; a turn leaves the step its last
    /// token is decoded.
    fn decode_step(
        &mut self,
        join: Vec<Join<ScriptedSession>>,
        _p: &SampleParams,
        _seed: u64,
    ) -> Result<Vec<Left<ScriptedSession>>> {
        for mut j in join {
            let turn = next_turn(&mut j.session, j.max_new_tokens);
            self.decoding.push(Decoding {
                key: j.key,
                session: j.session,
                turn,
                decoded: 0,
            });
        }
        if self.decoding.is_empty() {
            return Ok(Vec::new());
        }
        self.steps.push(self.decoding.len());
        if !self.per_token.is_zero() {
            std::thread::sleep(self.per_token);
        }
        let mut left = Vec::new();
        let mut k = 0;
        while k < self.decoding.len() {
            let d = &mut self.decoding[k];
            d.decoded += 1;
            if d.decoded >= d.turn.token_ids.len() {
                let d = self.decoding.remove(k);
                left.push(Left {
                    key: d.key,
                    session: d.session,
                    turn: d.turn,
                });
            } else {
                k += 1;
            }
        }
        Ok(left)
    }

    fn decoding(&self) -> usize {
        self.decoding.len()
    }

    fn push_assistant(&mut self, s: &mut ScriptedSession, text: &str) -> Result<()> {
        ChatTokens::forced(&mut s.transcript, text);
        Ok(())
    }

    fn transcript<'s>(&self, s: &'s ScriptedSession) -> &'s Transcript {
        &s.transcript
    }
}
