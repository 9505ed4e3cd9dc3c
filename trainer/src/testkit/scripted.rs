//! A policy that "generates" scripted turn texts, for testing the rollout
//! engine without a model. It can charge a generation cost per token of the
//! longest sequence in a batch, as batched decoding does, and hands each
//! row on as its tokens are done.

use super::chat::{ChatTokens, IM_END};
use crate::policy::{FinishReason, Policy, SampleParams, Segment, Transcript, TurnOutput};
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
}

impl ScriptedPolicy {
    pub fn new(script: impl Fn(&str) -> Vec<String> + Send + Sync + 'static) -> Self {
        Self {
            script: Arc::new(script),
            per_token: Duration::ZERO,
            calls: Vec::new(),
        }
    }

    /// Every generation call sleeps `per_token` × the longest output.
    pub fn with_cost(mut self, per_token: Duration) -> Self {
        self.per_token = per_token;
        self
    }
}

/// The log-prob the scripted policy reports for its k-th generated token.
pub fn scripted_logprob(k: usize) -> f32 {
    -0.25 - (k % 7) as f32 * 0.125
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
        let mut outs = Vec::with_capacity(sessions.len());
        for s in sessions.iter_mut() {
            let text = s
                .turns
                .get(s.next)
                .cloned()
                .unwrap_or_else(|| "(script exhausted)".into());
            s.next += 1;
            let mut ids = ChatTokens::text(&text);
            ids.push(IM_END);
            let finish = if ids.len() > p.max_new_tokens {
                ids.truncate(p.max_new_tokens);
                FinishReason::Length
            } else {
                FinishReason::Stop
            };
            let logprobs: Vec<f32> = (0..ids.len()).map(scripted_logprob).collect();
            ChatTokens::assistant_prefix(&mut s.transcript);
            ChatTokens::generated(&mut s.transcript, &ids, &logprobs);
            let text = ChatTokens::decode(ids.strip_suffix(&[IM_END]).unwrap_or(&ids));
            outs.push(TurnOutput {
                text,
                token_ids: ids,
                logprobs,
                finish,
            });
        }
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

    fn push_assistant(&mut self, s: &mut ScriptedSession, text: &str) -> Result<()> {
        ChatTokens::forced(&mut s.transcript, text);
        Ok(())
    }

    fn transcript<'s>(&self, s: &'s ScriptedSession) -> &'s Transcript {
        &s.transcript
    }
}
