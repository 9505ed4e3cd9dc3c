//! A tiny trainable policy: a bigram language model over ASCII plus the chat
//! template's special tokens. Small enough for CPU tests of the whole GRPO
//! loop (sampling, scoring with autograd, a frozen reference, checkpoints),
//! and real in every part that the trainer touches.

use super::chat::{ChatTokens, IM_END, IM_START};
use crate::policy::{
    FinishReason, Policy, SampleParams, Segment, TokenScores, TrainablePolicy, Transcript,
    TurnOutput,
};
use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// ASCII, then the five specials of [`super::chat`].
const VOCAB: i64 = 128 + 5;

fn row_of(id: i64) -> i64 {
    match id {
        0..=127 => id,
        _ if (IM_START..IM_START + 5).contains(&id) => 128 + (id - IM_START),
        _ => '?' as i64,
    }
}

fn id_of(row: i64) -> i64 {
    if row < 128 {
        row
    } else {
        IM_START + (row - 128)
    }
}

pub struct BigramSession {
    transcript: Transcript,
}

pub struct BigramPolicy {
    weight: Tensor,
    reference: Tensor,
    /// What `export_bytes` and `checkpoint_bytes` say, where a test wants a
    /// model too big to save.
    claimed_bytes: Option<u64>,
}

impl BigramPolicy {
    /// Random weights from `seed`; `im_end_bias` raises the odds of ending a
    /// turn, to keep sampled turns short.
    pub fn new(seed: u64, im_end_bias: f64) -> Self {
        Self::from_weight(Self::random(seed, im_end_bias))
    }

    /// Drawn from a generator of its own: torch's global one is shared with
    /// tests running on other threads, which made weights differ run to run.
    fn random(seed: u64, im_end_bias: f64) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Box-Muller: N(0, 0.5^2) entries.
        let normal: Vec<f32> = (0..VOCAB * VOCAB)
            .map(|_| {
                let (u, v): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() * 0.5) as f32
            })
            .collect();
        let w = Tensor::from_slice(&normal).view([VOCAB, VOCAB]);
        let end_col = row_of(IM_END);
        let _ = w.narrow(1, end_col, 1).g_add_scalar_(im_end_bias);
        w
    }

    /// The reference is a frozen copy of `w`.
    fn from_weight(w: Tensor) -> Self {
        let reference = w.copy();
        Self {
            weight: w.set_requires_grad(true),
            reference,
            claimed_bytes: None,
        }
    }

    /// The same policy, saying its export and its checkpoint each take
    /// `bytes` (to test the room checks without a disk that small).
    pub fn claiming_bytes(mut self, bytes: u64) -> Self {
        self.claimed_bytes = Some(bytes);
        self
    }

    /// Random weights plus `strength` on each transition of the given turn
    /// texts (from the generation prompt's last token to `<|im_end|>`): a
    /// stand-in for a warm-started model, so GRPO sees rewards from step 1.
    pub fn with_prior(seed: u64, im_end_bias: f64, turns: &[&str], strength: f64) -> Self {
        let w = Self::random(seed, im_end_bias);
        let mut table = Vec::<f32>::try_from(w.flatten(0, 1)).expect("f32 table");
        let mut seen = std::collections::HashSet::new();
        for turn in turns {
            let mut ids = vec!['\n' as i64];
            ids.extend(ChatTokens::text(turn));
            ids.push(IM_END);
            for pair in ids.windows(2) {
                let (a, b) = (row_of(pair[0]), row_of(pair[1]));
                if seen.insert((a, b)) {
                    table[(a * VOCAB + b) as usize] += strength as f32;
                }
            }
        }
        Self::from_weight(Tensor::from_slice(&table).view([VOCAB, VOCAB]))
    }

    /// Reads a dir written by [`TrainablePolicy::export`]; its weights are
    /// also the reference.
    pub fn load(dir: &std::path::Path) -> Result<Self> {
        let config = dir.join("config.json");
        let text = std::fs::read_to_string(&config)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", config.display()))?;
        if !text.contains("\"mmsr-bigram\"") {
            anyhow::bail!(
                "{} is not a bigram model (model_type must be \"mmsr-bigram\")",
                config.display()
            );
        }
        let file = dir.join("model.safetensors");
        let tensors = Tensor::read_safetensors(&file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        let (_, w) = tensors
            .into_iter()
            .find(|(n, _)| n == "bigram.weight")
            .ok_or_else(|| anyhow::anyhow!("{} has no tensor `bigram.weight`", file.display()))?;
        if w.size() != [VOCAB, VOCAB] || w.kind() != Kind::Float {
            anyhow::bail!(
                "{}: `bigram.weight` is {:?} {:?}, expected Float [{VOCAB}, {VOCAB}]",
                file.display(),
                w.kind(),
                w.size()
            );
        }
        Ok(Self::from_weight(w))
    }

    fn scores(
        weight: &Tensor,
        batch: &[&Transcript],
        temperature: f64,
        with_entropy: bool,
    ) -> TokenScores {
        let len = batch
            .iter()
            .map(|t| t.tokens.len())
            .max()
            .unwrap_or(1)
            .max(1) as i64;
        let b = batch.len() as i64;
        let mut rows = vec![0i64; (b * len) as usize];
        let mut valid = vec![0f32; (b * len) as usize];
        for (i, t) in batch.iter().enumerate() {
            for (j, &id) in t.tokens.iter().enumerate() {
                rows[i * len as usize + j] = row_of(id);
                if j > 0 {
                    valid[i * len as usize + j] = 1.0;
                }
            }
        }
        let rows = Tensor::from_slice(&rows).view([b, len]);
        let valid = Tensor::from_slice(&valid).view([b, len]);
        let prev = rows.narrow(1, 0, len - 1);
        let next = rows.narrow(1, 1, len - 1);
        let logits = weight
            .index_select(0, &prev.flatten(0, 1))
            .view([b, len - 1, VOCAB])
            / temperature;
        let logp_all = logits.log_softmax(-1, Kind::Float);
        let picked = logp_all
            .gather(2, &next.unsqueeze(-1), false)
            .squeeze_dim(-1);
        let pad = Tensor::zeros([b, 1], (Kind::Float, Device::Cpu));
        let logprobs = Tensor::cat(&[&pad, &picked], 1) * &valid;
        let entropy = with_entropy.then(|| {
            let h = -(logp_all.exp() * &logp_all).sum_dim_intlist(-1, false, Kind::Float);
            Tensor::cat(&[&pad, &h], 1) * &valid
        });
        TokenScores { logprobs, entropy }
    }
}

impl Policy for BigramPolicy {
    type Session = BigramSession;

    fn open(&mut self, user: &[Segment]) -> Result<BigramSession> {
        let mut transcript = Transcript::default();
        ChatTokens::user_turn(&mut transcript, user)?;
        Ok(BigramSession { transcript })
    }

    fn push_user(&mut self, s: &mut BigramSession, user: &[Segment]) -> Result<()> {
        ChatTokens::user_turn(&mut s.transcript, user)
    }

    fn generate(
        &mut self,
        sessions: &mut [&mut BigramSession],
        p: &SampleParams,
        seed: u64,
    ) -> Result<Vec<TurnOutput>> {
        let table = Vec::<f32>::try_from(self.weight.detach().flatten(0, 1))?;
        let mut outs = Vec::with_capacity(sessions.len());
        for (k, s) in sessions.iter_mut().enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (k as u64).wrapping_mul(0x9E37_79B9));
            ChatTokens::assistant_prefix(&mut s.transcript);
            let mut last = row_of(*s.transcript.tokens.last().expect("prefix"));
            let (mut ids, mut lps) = (Vec::new(), Vec::new());
            let mut finish = FinishReason::Length;
            while ids.len() < p.max_new_tokens {
                let logits = &table[(last * VOCAB) as usize..((last + 1) * VOCAB) as usize];
                let scaled: Vec<f64> = logits
                    .iter()
                    .map(|&l| l as f64 / p.temperature.max(1e-6))
                    .collect();
                let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scaled.iter().map(|l| (l - max).exp()).sum();
                let u: f64 = rng.random::<f64>() * z;
                let mut acc = 0.0;
                let mut pick = VOCAB - 1;
                for (r, l) in scaled.iter().enumerate() {
                    acc += (l - max).exp();
                    if acc >= u {
                        pick = r as i64;
                        break;
                    }
                }
                ids.push(id_of(pick));
                lps.push((scaled[pick as usize] - max - z.ln()) as f32);
                last = pick;
                if id_of(pick) == IM_END {
                    finish = FinishReason::Stop;
                    break;
                }
            }
            ChatTokens::generated(&mut s.transcript, &ids, &lps);
            let text = ChatTokens::decode(ids.strip_suffix(&[IM_END]).unwrap_or(&ids));
            outs.push(TurnOutput {
                text,
                token_ids: ids,
                logprobs: lps,
                finish,
            });
        }
        Ok(outs)
    }

    fn push_assistant(&mut self, s: &mut BigramSession, text: &str) -> Result<()> {
        ChatTokens::forced(&mut s.transcript, text);
        Ok(())
    }

    fn transcript<'s>(&self, s: &'s BigramSession) -> &'s Transcript {
        &s.transcript
    }
}

impl TrainablePolicy for BigramPolicy {
    fn score(
        &mut self,
        batch: &[&Transcript],
        temperature: f64,
        with_entropy: bool,
    ) -> Result<TokenScores> {
        Ok(Self::scores(&self.weight, batch, temperature, with_entropy))
    }

    fn score_reference(&mut self, batch: &[&Transcript], temperature: f64) -> Result<Tensor> {
        Ok(tch::no_grad(|| {
            Self::scores(&self.reference, batch, temperature, false).logprobs
        }))
    }

    fn trainable_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("bigram.weight".into(), self.weight.shallow_clone())]
    }

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn export_bytes(&self) -> u64 {
        self.claimed_bytes
            .unwrap_or_else(|| crate::train::disk::tensor_bytes(&self.trainable_parameters()))
    }

    fn checkpoint_bytes(&self) -> u64 {
        let p = self.trainable_parameters();
        self.claimed_bytes.unwrap_or_else(|| {
            crate::train::disk::tensor_bytes(&p) + crate::train::disk::adamw_state_bytes(&p)
        })
    }

    fn export(&self, dir: &std::path::Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("config.json"),
            format!("{{\"model_type\": \"mmsr-bigram\", \"vocab_size\": {VOCAB}}}\n"),
        )?;
        Tensor::write_safetensors(
            &[("bigram.weight", self.weight.detach())],
            dir.join("model.safetensors"),
        )?;
        Ok(())
    }

    fn replica(&self) -> Result<Option<Self>> {
        Ok(Some(Self {
            weight: self.weight.detach().copy().set_requires_grad(true),
            reference: self.reference.shallow_clone(),
            claimed_bytes: self.claimed_bytes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prior_makes_its_turns_likely_and_export_round_trips() {
        let turn = "<answer>7</answer>";
        let plain = BigramPolicy::new(5, 0.0);
        let mut primed = BigramPolicy::with_prior(5, 0.0, &[turn], 8.0);
        let mut t = Transcript::default();
        ChatTokens::user_turn(&mut t, &[Segment::Text("q".into())]).unwrap();
        ChatTokens::forced(&mut t, turn);
        let total = |p: &mut BigramPolicy| {
            p.score(&[&t], 1.0, false)
                .unwrap()
                .logprobs
                .sum(Kind::Float)
                .double_value(&[])
        };
        let mut plain = plain;
        assert!(total(&mut primed) > total(&mut plain) + 50.0);
        let dir = tempfile::tempdir().unwrap();
        primed.export(dir.path()).unwrap();
        let mut back = BigramPolicy::load(dir.path()).unwrap();
        assert_eq!(total(&mut back), total(&mut primed));
        let r = back
            .score_reference(&[&t], 1.0)
            .unwrap()
            .sum(Kind::Float)
            .double_value(&[]);
        assert_eq!(r, total(&mut primed), "loaded weights are the reference");
        std::fs::write(
            dir.path().join("config.json"),
            "{\"model_type\": \"qwen2_5_vl\"}",
        )
        .unwrap();
        let err = BigramPolicy::load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("not a bigram model"), "{err}");
    }

    /// The log-probs recorded while sampling equal those of a teacher-forced
    /// forward over the transcript: the invariant PPO ratios rest on.
    #[test]
    fn sampling_and_scoring_agree() {
        let mut p = BigramPolicy::new(3, 2.0);
        let mut s = p.open(&[Segment::Text("hi".into())]).unwrap();
        let params = SampleParams {
            temperature: 0.7,
            max_new_tokens: 20,
            ..Default::default()
        };
        p.generate(&mut [&mut s], &params, 11).unwrap();
        let t = p.transcript(&s).clone();
        let scored = p.score(&[&t], 0.7, true).unwrap();
        let lp = Vec::<f32>::try_from(scored.logprobs.squeeze_dim(0)).unwrap();
        for (i, &m) in t.response_mask.iter().enumerate() {
            if m == 1 {
                assert!(
                    (lp[i] - t.sample_logprobs[i]).abs() < 1e-4,
                    "token {i}: {} vs {}",
                    lp[i],
                    t.sample_logprobs[i]
                );
            }
        }
        let r = p.score_reference(&[&t], 0.7).unwrap();
        assert!(
            r.allclose(&scored.logprobs.detach(), 1e-6, 1e-6, false),
            "reference = initial weights"
        );
        assert!(!r.requires_grad());
    }
}
