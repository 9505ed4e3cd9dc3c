//! The contract between the policy model and the rollout engine.
//!
//! The rollout engine (`rollout/`) drives conversations through [`Policy`];
//! the Qwen2.5-VL model (`model/`) implements it, and tests implement it with
//! scripted policies. A session owns whatever per-conversation state the
//! policy keeps (token ids, KV cache, processed images), so a multi-turn
//! rollout appends turns without recomputing its prefix.

use anyhow::Result;

/// A piece of a user turn, in order.
#[derive(Clone, Debug)]
pub enum Segment {
    Text(String),
    /// Encoded image bytes (JPEG/PNG). The policy decodes and processes them;
    /// a corrupt image is an error naming the problem, not a panic.
    Image(Vec<u8>),
}

/// Sampling settings for one assistant turn.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleParams {
    /// 0 means greedy.
    pub temperature: f64,
    pub top_p: f64,
    /// 0 disables top-k.
    pub top_k: usize,
    /// Token budget for this turn; generation also stops at `<|im_end|>`.
    pub max_new_tokens: usize,
}

impl Default for SampleParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 256,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// The turn ended with `<|im_end|>`.
    Stop,
    /// The turn ran out of `max_new_tokens`.
    Length,
}

/// One generated assistant turn.
#[derive(Clone, Debug)]
pub struct TurnOutput {
    /// Decoded text without the closing `<|im_end|>`.
    pub text: String,
    /// Sampled ids, including `<|im_end|>` when `finish == Stop`.
    pub token_ids: Vec<i64>,
    /// Log-prob of each sampled id under the sampling distribution's model
    /// (temperature applied), aligned with `token_ids`.
    pub logprobs: Vec<f32>,
    pub finish: FinishReason,
}

/// A trajectory's token-level record, the input to training.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transcript {
    /// The whole conversation: prompt, assistant turns, user/tool turns.
    pub tokens: Vec<i64>,
    /// 1 on tokens the policy generated, 0 on everything else (prompt, user
    /// and tool turns, image pads, the template's framing tokens). SFT may
    /// widen it and put a loss weight above 1 on a token.
    pub response_mask: Vec<u8>,
    /// Sampling log-probs aligned with `tokens` (0.0 where the mask is 0).
    pub sample_logprobs: Vec<f32>,
    /// Encoded images in order of appearance, so training can re-run the
    /// vision tower on exactly what the rollout saw.
    pub images: Vec<Vec<u8>>,
}

impl Transcript {
    pub fn response_len(&self) -> usize {
        self.response_mask.iter().filter(|&&m| m != 0).count()
    }
}

/// A session starting an assistant turn in a continuous decode.
pub struct Join<S> {
    /// The caller's name for the session, handed back with its turn.
    pub key: usize,
    pub session: S,
    /// This turn's token budget (`SampleParams::max_new_tokens` is unused).
    pub max_new_tokens: usize,
}

/// A session whose turn a continuous decode finished, handed back.
pub struct Left<S> {
    pub key: usize,
    pub session: S,
    pub turn: TurnOutput,
}

/// A policy the rollout engine can drive. Not `Sync`: one thread owns the
/// model; tool calls run elsewhere while it generates for other sessions.
pub trait Policy {
    type Session: Send;

    /// Open a conversation with its first user turn (system prompt, if any,
    /// is the policy's own, from its chat template).
    fn open(&mut self, user: &[Segment]) -> Result<Self::Session>;

    /// Append a user turn, e.g. `<information>…</information>` from a search.
    fn push_user(&mut self, session: &mut Self::Session, user: &[Segment]) -> Result<()>;

    /// Generate one assistant turn for each session, batched together.
    /// `seed` makes the batch reproducible.
    fn generate(
        &mut self,
        sessions: &mut [&mut Self::Session],
        params: &SampleParams,
        seed: u64,
    ) -> Result<Vec<TurnOutput>>;

    /// As [`Self::generate`], and tells `on_done` of each session's turn
    /// (its index in `sessions`) once it is done. A policy that decodes
    /// rows together calls it the step a row finishes, while the rest still
    /// decode, so the rollout engine can start that turn's search early; the
    /// default calls it after the whole batch. The returned turns are the
    /// same as `generate`'s.
    fn generate_streaming(
        &mut self,
        sessions: &mut [&mut Self::Session],
        params: &SampleParams,
        seed: u64,
        on_done: &mut dyn FnMut(usize, &TurnOutput),
    ) -> Result<Vec<TurnOutput>> {
        let outs = self.generate(sessions, params, seed)?;
        for (k, out) in outs.iter().enumerate() {
            on_done(k, out);
        }
        Ok(outs)
    }

    /// Continuous batching, one decode step per call: `join` joins the
    /// running decode (its prompts prefilled, together), every row then
    /// samples a token, and the sessions whose turn ended leave it, handed
    /// back; the others keep decoding at the next call. So a session whose
    /// search has returned joins at the next step instead of waiting for
    /// the longest row of a call. `seed` seeds the joining rows (row k as
    /// `generate` seeds row k). Sampling settings must not change while
    /// rows decode. The default, for policies that decode in whole calls,
    /// runs `join` as `generate` calls, one per budget: every turn leaves.
    fn decode_step(
        &mut self,
        join: Vec<Join<Self::Session>>,
        params: &SampleParams,
        seed: u64,
    ) -> Result<Vec<Left<Self::Session>>> {
        let mut by_budget: Vec<Vec<Join<Self::Session>>> = Vec::new();
        for j in join {
            match by_budget
                .iter_mut()
                .find(|g| g[0].max_new_tokens == j.max_new_tokens)
            {
                Some(g) => g.push(j),
                None => by_budget.push(vec![j]),
            }
        }
        let mut left = Vec::new();
        for (g, mut group) in by_budget.into_iter().enumerate() {
            let p = SampleParams {
                max_new_tokens: group[0].max_new_tokens,
                ..params.clone()
            };
            let mut sessions: Vec<&mut Self::Session> =
                group.iter_mut().map(|j| &mut j.session).collect();
            let turns = self.generate(&mut sessions, &p, seed ^ g as u64)?;
            anyhow::ensure!(
                turns.len() == group.len(),
                "policy returned {} turns for {} sessions",
                turns.len(),
                group.len()
            );
            left.extend(group.into_iter().zip(turns).map(|(j, turn)| Left {
                key: j.key,
                session: j.session,
                turn,
            }));
        }
        Ok(left)
    }

    /// Rows a continuous decode holds (sessions joined and not yet left).
    fn decoding(&self) -> usize {
        0
    }

    /// Append a given assistant turn (teacher forcing, e.g. SFT data or a
    /// forced action in a fixed workflow): framed as a generated turn, its
    /// text and `<|im_end|>` get mask 1 and sample log-prob 0.0.
    fn push_assistant(&mut self, session: &mut Self::Session, text: &str) -> Result<()>;

    fn transcript<'s>(&self, session: &'s Self::Session) -> &'s Transcript;

    /// Ids that only ever stand in for images (pads and their frame): never
    /// sampled, and never a target when training on context tokens.
    fn vision_placeholders(&self) -> Vec<i64> {
        Vec::new()
    }
}

/// Teacher-forced scores of whole transcripts: the input to the GRPO update.
pub struct TokenScores {
    /// [B, L], L = the longest transcript: log p(tokens[t] | tokens[..t]) at
    /// the given temperature (logits / temperature), aligned with `tokens`
    /// like `response_mask`; 0.0 at t = 0 and on padding. Only positions
    /// where `response_mask` is 1 are guaranteed: a policy may leave the
    /// others 0.0 (the Qwen policy projects onto the vocab only there).
    pub logprobs: tch::Tensor,
    /// [B, L], the entropy of the distribution that predicted tokens[t]
    /// (same alignment), when asked for.
    pub entropy: Option<tch::Tensor>,
}

/// A policy the GRPO trainer can update. The trainer owns the optimizer and
/// checkpoints (through `trainable_parameters`); the model owns its forward,
/// its frozen reference and its export.
pub trait TrainablePolicy: Policy + Send {
    /// Scores under the current weights. Records autograd unless called
    /// inside `tch::no_grad`. Images come from `Transcript::images`.
    fn score(
        &mut self,
        batch: &[&Transcript],
        temperature: f64,
        with_entropy: bool,
    ) -> Result<TokenScores>;

    /// Log-probs ([B, L], as `score`) under the frozen reference model: the
    /// initial weights (LoRA adapters off, or a frozen copy). No autograd.
    fn score_reference(&mut self, batch: &[&Transcript], temperature: f64) -> Result<tch::Tensor>;

    /// The tensors the optimizer updates (LoRA adapters, or every weight not
    /// frozen), with `requires_grad` set, sharing storage with the model.
    /// Names are stable: checkpoints store them by name.
    fn trainable_parameters(&self) -> Vec<(String, tch::Tensor)>;

    /// Scores `batch`, maps them to a scalar loss with `loss`, and
    /// back-propagates it into the trainable parameters' gradients. The
    /// default keeps the whole graph; a policy with gradient checkpointing
    /// overrides it to recompute activations layer by layer instead.
    fn backward_scores(
        &mut self,
        batch: &[&Transcript],
        temperature: f64,
        with_entropy: bool,
        loss: &mut dyn FnMut(&TokenScores) -> Result<tch::Tensor>,
    ) -> Result<()> {
        let scores = self.score(batch, temperature, with_entropy)?;
        loss(&scores)?.backward();
        Ok(())
    }

    fn device(&self) -> tch::Device;

    /// Writes a transformers-loadable model dir (config, tokenizer,
    /// safetensors) with any LoRA adapters merged into the weights.
    fn export(&self, dir: &std::path::Path) -> Result<()>;

    /// About what [`Self::export`] writes, in bytes, to check the room for
    /// it before training; by default the trainable parameters.
    fn export_bytes(&self) -> u64 {
        crate::train::disk::tensor_bytes(&self.trainable_parameters())
    }

    /// About what a checkpoint writes, in bytes: the trainable weights and
    /// AdamW's state for them.
    fn checkpoint_bytes(&self) -> u64 {
        let p = self.trainable_parameters();
        crate::train::disk::tensor_bytes(&p) + crate::train::disk::adamw_state_bytes(&p)
    }

    /// An independent copy (the same weights, gradients of its own) for
    /// another thread of data-parallel SFT on the CPU; `None` where the
    /// policy cannot make one that computes bit for bit what it does.
    fn replica(&self) -> Result<Option<Self>>
    where
        Self: Sized,
    {
        Ok(None)
    }
}
