//! What a rollout produces: one trajectory per request, with its turns, its
//! searches, why it ended, and its token-level transcript.

use crate::policy::{FinishReason, Transcript};
use crate::protocol::Action;
use serde::Serialize;
use std::time::Duration;

/// One question to roll out.
#[derive(Clone, Debug)]
pub struct RolloutRequest {
    /// The dataset row it came from (`train.parquet#12`), for errors.
    pub id: String,
    pub question: String,
    /// The input image (encoded), the one image search looks up.
    pub image: Vec<u8>,
    pub image_url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Answered,
    /// A turn ended without any action tag.
    NoAction,
    /// A search in the last allowed round.
    RoundLimit,
    ImageSearchLimit,
    TextSearchLimit,
    /// A turn ran out of its token budget.
    TurnTokenLimit,
    /// The trajectory ran out of its total response budget.
    ResponseTokenLimit,
    /// A search where the workflow offers none (the eval's direct workflow).
    SearchUnavailable,
}

#[derive(Clone, Debug)]
pub struct TurnRecord {
    pub text: String,
    pub token_ids: Vec<i64>,
    pub logprobs: Vec<f32>,
    pub finish: FinishReason,
    pub action: Option<Action>,
}

#[derive(Clone, Debug)]
pub struct Trajectory {
    pub transcript: Transcript,
    pub turns: Vec<TurnRecord>,
    pub image_searches: usize,
    pub text_searches: usize,
    pub tool_errors: usize,
    pub end: EndReason,
    /// What each search showed the model, in order, images as `<image>`.
    pub observations: Vec<String>,
}

impl Trajectory {
    pub fn turn_texts(&self) -> Vec<&str> {
        self.turns.iter().map(|t| t.text.as_str()).collect()
    }

    pub fn searches(&self) -> usize {
        self.image_searches + self.text_searches
    }

    pub fn response_tokens(&self) -> usize {
        self.turns.iter().map(|t| t.token_ids.len()).sum()
    }
}

/// Where a rollout batch spent its wall time, from the model thread's view:
/// generating, or blocked waiting on tools with nothing to generate.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RolloutStats {
    pub wall: Duration,
    pub generate: Duration,
    pub tool_wait: Duration,
    pub generate_calls: usize,
    /// Generation calls made while at least one search was in flight: the
    /// overlap that async mode exists for (always 0 in sync mode).
    pub overlapped_calls: usize,
    pub tool_calls: usize,
    /// Summed latency of all searches.
    pub tool_busy: Duration,
}

/// Checks a transcript against the turns that produced it: the mask is 1
/// exactly on the generated tokens, in order, with their sampling
/// log-probs. Any `Policy` implementation must pass this.
pub fn check_transcript(t: &Transcript, turns: &[TurnRecord]) -> Result<(), String> {
    let n = t.tokens.len();
    if t.response_mask.len() != n || t.sample_logprobs.len() != n {
        return Err(format!(
            "lengths differ: tokens {n}, mask {}, logprobs {}",
            t.response_mask.len(),
            t.sample_logprobs.len()
        ));
    }
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, &m) in t.response_mask.iter().enumerate() {
        match m {
            0 => {
                if t.sample_logprobs[i] != 0.0 {
                    return Err(format!(
                        "token {i}: mask 0 but log-prob {}",
                        t.sample_logprobs[i]
                    ));
                }
            }
            1 => match runs.last_mut() {
                Some((_, end)) if *end == i => *end += 1,
                _ => runs.push((i, i + 1)),
            },
            other => return Err(format!("token {i}: mask value {other}")),
        }
    }
    let generated: Vec<&TurnRecord> = turns.iter().filter(|t| !t.token_ids.is_empty()).collect();
    if runs.len() != generated.len() {
        return Err(format!(
            "{} masked runs for {} generated turns",
            runs.len(),
            generated.len()
        ));
    }
    for (k, ((s, e), turn)) in runs.iter().zip(generated).enumerate() {
        if t.tokens[*s..*e] != turn.token_ids[..] {
            return Err(format!(
                "turn {k}: masked tokens {s}..{e} differ from the generated ids"
            ));
        }
        if t.sample_logprobs[*s..*e] != turn.logprobs[..] {
            return Err(format!("turn {k}: log-probs differ from the sampled ones"));
        }
    }
    Ok(())
}
