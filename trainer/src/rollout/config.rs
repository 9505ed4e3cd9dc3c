//! Rollout settings: the paper's limits, sampling, and the scheduling mode.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutMode {
    /// Each trajectory moves on its own; generation batches whatever is ready
    /// while others wait on tools.
    #[default]
    Async,
    /// The seed's scheme: all generate, then all tools run, then next round.
    Sync,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Rollouts per prompt (the GRPO group size).
    pub n: usize,
    /// Prompts per training step.
    pub batch_prompts: usize,
    pub mode: RolloutMode,
    /// Assistant turns per trajectory.
    pub max_rounds: usize,
    pub max_image_searches: usize,
    pub max_text_searches: usize,
    /// Token budget of one assistant turn.
    pub max_turn_tokens: usize,
    /// Token budget of all assistant turns of a trajectory together.
    pub max_response_tokens: usize,
    /// Most sessions per generation call (0: no cap).
    pub max_batch: usize,
    /// Async: after a search result arrives, keep taking results while the
    /// next one follows within this many ms (and the call is not full), so
    /// searches launched together come back as one call, not one each.
    /// A launch-bound device (a GPU) pays per call, not per session. 0: off
    /// (on 2 CPU cores calls are slow enough that siblings arrive together).
    pub batch_linger_ms: u64,
    /// Async: start a turn's search the decode step its row finishes, while
    /// the call's longer rows go on, instead of when the call returns. Off
    /// by default: results then come back spread out and split the next
    /// round into more calls, which a device whose decode step costs the
    /// same at any batch size (a GPU) pays for (`bench rollout`'s
    /// scheduler runs: 0.91–0.94×); on 2 CPU cores it is within the noise.
    pub early_search_start: bool,
    /// Async: generation is one running decode (`Policy::decode_step`):
    /// a session joins it at the next decode step once its search returns,
    /// and leaves it, starting its search, the step its turn ends. A call
    /// no longer waits for its longest row, nor a result for the next call.
    /// `max_batch` caps the rows decoding together.
    pub continuous_batching: bool,
    /// Continuous batching: while rows decode, sessions ready to join wait
    /// up to this many decode steps for others (unless they would fill the
    /// decode), so more of them share one prefill. 0: join at the next step.
    pub join_linger_steps: u64,
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    /// Folder with the prompt templates (empty: the built-in copies of
    /// `configs/prompts/`).
    pub prompts_dir: String,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            n: 4,
            batch_prompts: 8,
            mode: RolloutMode::Async,
            max_rounds: 3,
            max_image_searches: 1,
            max_text_searches: 2,
            max_turn_tokens: 2048,
            max_response_tokens: 8192,
            max_batch: 0,
            batch_linger_ms: 0,
            early_search_start: false,
            continuous_batching: false,
            join_linger_steps: 0,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            prompts_dir: String::new(),
        }
    }
}
