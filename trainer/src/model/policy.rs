//! [`QwenVlPolicy`]: Qwen2.5-VL behind the rollout engine's [`Policy`] and
//! the trainer's [`TrainablePolicy`].
//!
//! A session keeps the chat messages (to render each new turn with the
//! model's template), the token-level transcript with its response mask,
//! and the generator's state (a KV cache plus tokens not yet in it), so a
//! multi-turn rollout never recomputes its prefix. The cache belongs to the
//! weights it was computed with: after an update, continue an old session
//! through [`QwenVlPolicy::uncached`].
//!
//! Sampled log-probs are those of softmax(logits / T) before top-k/top-p
//! truncation (T = 1 for greedy), i.e. what `score` at the same temperature
//! returns; with LoRA dropout > 0, `score` (train mode) applies dropout and
//! no longer matches them exactly.

use super::config::QwenVlConfig;
use super::continuous::{ContinuousDecode, Joining};
use super::generate::{GenParams, GenStats, Generated, SeqState, generate_streaming};
use super::image::{ImageProcessor, ProcessedImage};
use super::layers::Mode;
use super::lora::LoraOptions;
use super::qwen::QwenVl;
use super::sampling::Sampling;
use super::scoring::{self, Batch};
use super::tokenizer::{ChatTokenizer, Part};
use super::weights::{self, Source};
use crate::policy::{
    FinishReason, Join, Left, Policy, SampleParams, Segment, TokenScores, TrainablePolicy,
    Transcript, TurnOutput,
};
use anyhow::{Context, Result, ensure};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyOptions {
    pub dtype: Kind,
    pub device: Device,
    /// No gradients into the vision tower (it runs under no_grad).
    pub freeze_vision: bool,
    /// `backward_scores` recomputes decoder layers instead of keeping them.
    pub gradient_checkpointing: bool,
    /// Train LoRA adapters instead of the full weights.
    pub lora: Option<LoraOptions>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            dtype: Kind::Float,
            device: Device::Cpu,
            freeze_vision: true,
            gradient_checkpointing: false,
            lora: None,
        }
    }
}

/// One conversation.
pub struct QwenSession {
    transcript: Transcript,
    messages: Vec<Value>,
    seq: SeqState,
    /// The last assistant turn ran out of tokens and is not closed yet.
    open_turn: bool,
}

impl QwenSession {
    /// Tokens in the KV cache (the rest is computed at the next generate).
    pub fn cached_len(&self) -> usize {
        self.seq.cached_len()
    }
}

pub struct QwenVlPolicy {
    model: QwenVl,
    /// The frozen initial weights when training without LoRA.
    reference: Option<QwenVl>,
    tokenizer: ChatTokenizer,
    processor: ImageProcessor,
    opts: PolicyOptions,
    dir: PathBuf,
    /// Ids after `<|im_end|>` in the template's closer (e.g. `\n`).
    closer_rest: Vec<i64>,
    gen_prompt: Vec<i64>,
    /// Ids that end a turn: `<|im_end|>` and generation_config.json's
    /// `eos_token_id` (Qwen2.5-VL lists `<|endoftext|>` too), as
    /// transformers' `generate` stops.
    stop_ids: Vec<i64>,
    dropout_calls: u64,
    /// Counters of the last `generate` call or decode step.
    pub last_stats: GenStats,
    /// The running continuous decode, and the sessions in it (their
    /// generator state is in the decode).
    continuous: Option<ContinuousDecode>,
    decoding: HashMap<usize, QwenSession>,
}

/// The torch name of a dtype, as config.json and the Python baselines spell it.
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        _ => "float32",
    }
}

impl QwenVlPolicy {
    /// config.json, tokenizer.json (+tokenizer_config.json),
    /// preprocessor_config.json, safetensors.
    pub fn load(model_dir: &Path, opts: &PolicyOptions) -> Result<Self> {
        let cfg = QwenVlConfig::from_file(&model_dir.join("config.json"))?;
        let tensors = weights::load_dir(model_dir)
            .with_context(|| format!("loading the weights of {}", model_dir.display()))?;
        let model = QwenVl::new(cfg, Source::Loaded(tensors), opts.dtype, opts.device)
            .with_context(|| format!("building the model of {}", model_dir.display()))?;
        Self::assemble(model_dir, model, opts)
    }

    /// Same files but no weights: random init from `seed` (the demo's tiny model).
    pub fn init_random(model_dir: &Path, seed: u64, opts: &PolicyOptions) -> Result<Self> {
        let cfg = QwenVlConfig::from_file(&model_dir.join("config.json"))?;
        let model = QwenVl::random(cfg, seed, opts.dtype, opts.device)?;
        Self::assemble(model_dir, model, opts)
    }

    fn assemble(dir: &Path, mut model: QwenVl, opts: &PolicyOptions) -> Result<Self> {
        if let Device::Cuda(i) = opts.device {
            ensure!(
                tch::Cuda::is_available() && (i as i64) < tch::Cuda::device_count(),
                "device cuda:{i} is not available"
            );
        }
        let tokenizer = ChatTokenizer::from_dir(dir)?;
        // Sampling comes from the run's config; only the end-of-turn ids
        // are read. Checked here too because export copies it, and a broken
        // one would make the model dir unloadable.
        let gen_config = dir.join("generation_config.json");
        let mut stop_ids = vec![tokenizer.im_end];
        if gen_config.exists() {
            let text = std::fs::read_to_string(&gen_config)
                .with_context(|| format!("reading {}", gen_config.display()))?;
            let json = serde_json::from_str::<serde_json::Value>(&text)
                .with_context(|| format!("{} is not JSON", gen_config.display()))?;
            for id in
                eos_ids(&json).with_context(|| format!("{}: eos_token_id", gen_config.display()))?
            {
                ensure!(
                    (0..model.cfg.text.vocab_size as i64).contains(&id),
                    "{}: eos_token_id {id} is outside the vocabulary ({} ids)",
                    gen_config.display(),
                    model.cfg.text.vocab_size
                );
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        let processor = ImageProcessor::from_file(&dir.join("preprocessor_config.json"))?;
        let vocab = model.cfg.text.vocab_size;
        ensure!(
            tokenizer.vocab_size() <= vocab,
            "{}: the tokenizer has {} tokens, more than the model's vocab_size {vocab}",
            dir.display(),
            tokenizer.vocab_size()
        );
        let image_pad = tokenizer.token_id("<|image_pad|>");
        ensure!(
            image_pad == Some(model.cfg.image_token_id),
            "{}: <|image_pad|> is {image_pad:?} in the tokenizer but image_token_id {} in config.json",
            dir.display(),
            model.cfg.image_token_id
        );
        // Checked here, not at the first rollout, where the error could not
        // name the model.
        let probe = ChatTokenizer::user_message(&[Part::Image, Part::Text("x".into())]);
        let rendered = tokenizer.encode(&tokenizer.render(&[probe], false)?)?;
        let slots = rendered
            .iter()
            .filter(|&&t| t == model.cfg.image_token_id)
            .count();
        ensure!(
            slots == 1,
            "{}: the chat template renders {slots} image placeholders (<|image_pad|>) for a user message with one image",
            dir.display()
        );
        let closer = tokenizer.encode(&tokenizer.closer)?;
        let gen_prompt = tokenizer.encode(&tokenizer.gen_prompt)?;
        for (_, t) in &model.params {
            let _ = t.set_requires_grad(false);
        }
        let reference = match &opts.lora {
            Some(lora) => {
                model.add_lora(lora)?;
                None
            }
            None => {
                let copy = model
                    .params
                    .iter()
                    .map(|(n, t)| {
                        let frozen = opts.freeze_vision && n.starts_with("visual.");
                        let t = if frozen {
                            t.shallow_clone()
                        } else {
                            t.detach().copy()
                        };
                        (n.clone(), t)
                    })
                    .collect();
                let reference = QwenVl::new(
                    model.cfg.clone(),
                    Source::Loaded(copy),
                    opts.dtype,
                    opts.device,
                )?;
                for (n, t) in &model.params {
                    if !(opts.freeze_vision && n.starts_with("visual.")) {
                        let _ = t.set_requires_grad(true);
                    }
                }
                Some(reference)
            }
        };
        Ok(Self {
            model,
            reference,
            tokenizer,
            processor,
            opts: opts.clone(),
            dir: dir.to_path_buf(),
            closer_rest: closer[1..].to_vec(),
            gen_prompt,
            stop_ids,
            dropout_calls: 0,
            last_stats: GenStats::default(),
            continuous: None,
            decoding: HashMap::new(),
        })
    }

    pub fn model(&self) -> &QwenVl {
        &self.model
    }

    pub fn tokenizer(&self) -> &ChatTokenizer {
        &self.tokenizer
    }

    pub fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    pub fn options(&self) -> &PolicyOptions {
        &self.opts
    }

    /// A transformers-loadable dir (config, tokenizer files, safetensors), LoRA merged.
    pub fn save_pretrained(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        weights::save_dir(&self.model.merged_params(), out, weights::SHARD_BYTES)?;
        let mut config = self.model.cfg.raw.clone();
        if let Some(obj) = config.as_object_mut() {
            obj.insert("dtype".into(), dtype_name(self.opts.dtype).into());
            if obj.contains_key("torch_dtype") {
                obj.insert("torch_dtype".into(), dtype_name(self.opts.dtype).into());
            }
        }
        let path = out.join("config.json");
        std::fs::write(&path, serde_json::to_string_pretty(&config)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        let mut files = self.tokenizer.files.clone();
        for extra in ["preprocessor_config.json", "generation_config.json"] {
            let p = self.dir.join(extra);
            if p.exists() {
                files.push(p);
            }
        }
        for src in files {
            let dst = out.join(src.file_name().expect("a file"));
            if src != dst {
                std::fs::copy(&src, &dst)
                    .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
            }
        }
        Ok(())
    }

    /// The same session with nothing cached: the next generate recomputes
    /// the whole prefix (to check the cache, or after a weight update).
    pub fn uncached(&self, s: &QwenSession) -> Result<QwenSession> {
        let images = self.process_all(&s.transcript.images)?;
        let mut seq = SeqState::new();
        seq.push(&s.transcript.tokens, images, &self.model)?;
        Ok(QwenSession {
            transcript: s.transcript.clone(),
            messages: s.messages.clone(),
            seq,
            open_turn: s.open_turn,
        })
    }

    fn process_all(&self, images: &[Vec<u8>]) -> Result<Vec<ProcessedImage>> {
        images
            .iter()
            .enumerate()
            .map(|(i, b)| {
                self.processor
                    .process_bytes(b)
                    .with_context(|| format!("image {i}"))
            })
            .collect()
    }

    fn append(
        &self,
        s: &mut QwenSession,
        ids: &[i64],
        images: Vec<ProcessedImage>,
        mask: Option<&[f32]>,
    ) -> Result<()> {
        s.seq.push(ids, images, &self.model)?;
        let t = &mut s.transcript;
        t.tokens.extend_from_slice(ids);
        match mask {
            Some(lp) => {
                t.response_mask.extend(std::iter::repeat_n(1, ids.len()));
                t.sample_logprobs.extend_from_slice(lp);
            }
            None => {
                t.response_mask.extend(std::iter::repeat_n(0, ids.len()));
                t.sample_logprobs
                    .extend(std::iter::repeat_n(0.0, ids.len()));
            }
        }
        Ok(())
    }

    /// Closes an assistant turn cut by the budget: `<|im_end|>` and the
    /// template's rest, all framing (mask 0).
    fn close_open_turn(&self, s: &mut QwenSession) -> Result<()> {
        if s.open_turn {
            let mut ids = vec![self.tokenizer.im_end];
            ids.extend_from_slice(&self.closer_rest);
            self.append(s, &ids, Vec::new(), None)?;
            s.open_turn = false;
        }
        Ok(())
    }

    fn user_turn(&self, s: &mut QwenSession, user: &[Segment]) -> Result<()> {
        let mut parts = Vec::with_capacity(user.len());
        let mut images = Vec::new();
        let mut bytes = Vec::new();
        for seg in user {
            match seg {
                // Search results are outside text: special tokens they
                // spell stay text (ours come from the chat template).
                Segment::Text(t) => parts.push(Part::Text(self.tokenizer.defuse(t).into_owned())),
                Segment::Image(b) => {
                    let img = self.processor.process_bytes(b).with_context(|| {
                        format!("bad image in user turn (image {})", images.len())
                    })?;
                    images.push(img);
                    bytes.push(b.clone());
                    parts.push(Part::Image);
                }
            }
        }
        let message = ChatTokenizer::user_message(&parts);
        let delta = self.tokenizer.render_delta(&s.messages, message.clone())?;
        let ids = self.tokenizer.encode(&delta)?;
        let pad = self.model.cfg.image_token_id;
        let merge = self.model.cfg.vision.spatial_merge_size;
        let placeholders = ids.iter().filter(|&&t| t == pad).count();
        ensure!(
            placeholders == images.len(),
            "the user turn renders {placeholders} image placeholders for {} images",
            images.len()
        );
        let mut expanded = Vec::with_capacity(ids.len());
        let mut next = images.iter();
        for &t in &ids {
            if t == pad {
                let n = next.next().expect("counted").num_tokens(merge);
                expanded.extend(std::iter::repeat_n(pad, n));
            } else {
                expanded.push(t);
            }
        }
        self.close_open_turn(s)?;
        self.append(s, &expanded, images, None)?;
        s.transcript.images.extend(bytes);
        s.messages.push(message);
        Ok(())
    }

    /// Generation settings for a turn, checked.
    fn gen_params(&self, params: &SampleParams) -> Result<GenParams> {
        ensure!(
            params.temperature >= 0.0,
            "temperature {} is negative",
            params.temperature
        );
        ensure!(
            params.top_p > 0.0 && params.top_p <= 1.0,
            "top_p {} is not in (0, 1]",
            params.top_p
        );
        Ok(GenParams {
            sampling: Sampling {
                temperature: params.temperature,
                top_p: params.top_p,
                top_k: params.top_k,
                suppress: self.vision_placeholders(),
            },
            max_new_tokens: params.max_new_tokens,
            stop: self.stop_ids.clone(),
            share_prefill: true,
        })
    }

    /// Opens an assistant turn: closes one cut short, then the template's
    /// generation prompt.
    fn begin_turn(&self, s: &mut QwenSession) -> Result<()> {
        self.close_open_turn(s)?;
        self.append(s, &self.gen_prompt, Vec::new(), None)
    }

    /// Records a generated turn: the generator already holds the sampled
    /// ids; the transcript records them, then the template's rest after
    /// `<|im_end|>`.
    fn end_turn(&self, s: &mut QwenSession, out: &Generated, turn: &TurnOutput) -> Result<()> {
        let t = &mut s.transcript;
        t.tokens.extend_from_slice(&out.ids);
        t.response_mask
            .extend(std::iter::repeat_n(1, out.ids.len()));
        t.sample_logprobs.extend_from_slice(&out.logprobs);
        if out.ids.last() == Some(&self.tokenizer.im_end) && out.stopped {
            self.append(s, &self.closer_rest, Vec::new(), None)?;
        } else {
            // Cut by the budget, or ended by another end-of-turn id:
            // the next turn closes it with <|im_end|> (framing).
            s.open_turn = true;
        }
        s.messages
            .push(ChatTokenizer::assistant_message(&turn.text));
        Ok(())
    }

    fn reference_model(&self) -> (&QwenVl, Mode) {
        match &self.reference {
            Some(r) => (r, Mode::EVAL),
            None => (&self.model, Mode::REFERENCE),
        }
    }

    fn batch(&self, model: &QwenVl, batch: &[&Transcript]) -> Result<Batch> {
        let tokens: Vec<&[i64]> = batch.iter().map(|t| t.tokens.as_slice()).collect();
        let images = batch
            .iter()
            .enumerate()
            .map(|(i, t)| {
                self.process_all(&t.images)
                    .with_context(|| format!("transcript {i}"))
            })
            .collect::<Result<Vec<_>>>()?;
        // Callers read scores on the response tokens only.
        let masks: Vec<&[u8]> = batch.iter().map(|t| t.response_mask.as_slice()).collect();
        Batch::new(model, &tokens, &images, Some(&masks))
    }

    fn vision_grad(&self) -> bool {
        !self.opts.freeze_vision && self.opts.lora.is_none()
    }
}

impl Policy for QwenVlPolicy {
    type Session = QwenSession;

    fn open(&mut self, user: &[Segment]) -> Result<QwenSession> {
        let mut s = QwenSession {
            transcript: Transcript::default(),
            messages: Vec::new(),
            seq: SeqState::new(),
            open_turn: false,
        };
        self.user_turn(&mut s, user)?;
        Ok(s)
    }

    fn push_user(&mut self, session: &mut QwenSession, user: &[Segment]) -> Result<()> {
        self.user_turn(session, user)
    }

    fn generate(
        &mut self,
        sessions: &mut [&mut QwenSession],
        params: &SampleParams,
        seed: u64,
    ) -> Result<Vec<TurnOutput>> {
        self.generate_streaming(sessions, params, seed, &mut |_, _| {})
    }

    fn generate_streaming(
        &mut self,
        sessions: &mut [&mut QwenSession],
        params: &SampleParams,
        seed: u64,
        on_done: &mut dyn FnMut(usize, &TurnOutput),
    ) -> Result<Vec<TurnOutput>> {
        let gp = self.gen_params(params)?;
        for s in sessions.iter_mut() {
            self.begin_turn(s)?;
        }
        let mut stats = GenStats::default();
        // Turns decoded as their rows finish, kept for the transcripts below.
        let mut early: Vec<Option<TurnOutput>> = vec![None; sessions.len()];
        let outs = {
            let mut seqs: Vec<&mut SeqState> = sessions.iter_mut().map(|s| &mut s.seq).collect();
            let tokenizer = &self.tokenizer;
            generate_streaming(
                &self.model,
                &mut seqs,
                &gp,
                seed,
                Mode::EVAL,
                &mut stats,
                &mut |k, g| {
                    // A decode error surfaces below, where it can be returned.
                    if let Ok(turn) = turn_output(tokenizer, g) {
                        on_done(k, &turn);
                        early[k] = Some(turn);
                    }
                },
            )?
        };
        tracing::debug!(
            sessions = sessions.len(),
            prefill_tokens = stats.prefill_tokens,
            prefill_shared = stats.prefill_shared,
            prefill_ms = stats.prefill_secs * 1e3,
            decode_tokens = stats.decode_tokens,
            decode_ms = stats.decode_secs * 1e3,
            "generate"
        );
        self.last_stats = stats;
        let mut turns = Vec::with_capacity(outs.len());
        for ((s, out), turn) in sessions.iter_mut().zip(outs).zip(early) {
            let turn = match turn {
                Some(t) => t,
                None => turn_output(&self.tokenizer, &out)?,
            };
            self.end_turn(s, &out, &turn)?;
            turns.push(turn);
        }
        Ok(turns)
    }

    fn decode_step(
        &mut self,
        join: Vec<Join<QwenSession>>,
        params: &SampleParams,
        seed: u64,
    ) -> Result<Vec<Left<QwenSession>>> {
        // Settings are built (and checked) when a decode starts; each later
        // step only compares the sampling fields it was started with.
        match &self.continuous {
            Some(d) if !d.is_empty() => {
                let s = &d.params().sampling;
                ensure!(
                    (s.temperature, s.top_p, s.top_k)
                        == (params.temperature, params.top_p, params.top_k),
                    "sampling settings changed while {} rows decode",
                    d.len()
                );
            }
            _ => self.continuous = Some(ContinuousDecode::new(self.gen_params(params)?)),
        }
        let mut joining = Vec::with_capacity(join.len());
        for Join {
            key,
            mut session,
            max_new_tokens,
        } in join
        {
            ensure!(
                !self.decoding.contains_key(&key),
                "session {key} joins a decode it is already in"
            );
            self.begin_turn(&mut session)?;
            joining.push(Joining {
                key,
                seq: std::mem::take(&mut session.seq),
                max_new_tokens,
            });
            self.decoding.insert(key, session);
        }
        let decode = self.continuous.as_mut().expect("started above");
        let mut stats = GenStats::default();
        let done = decode.step(&self.model, joining, seed, Mode::EVAL, &mut stats)?;
        self.last_stats = stats;
        let mut left = Vec::with_capacity(done.len());
        for (key, seq, out) in done {
            let mut session = self
                .decoding
                .remove(&key)
                .expect("joined sessions are kept");
            session.seq = seq;
            let turn = turn_output(&self.tokenizer, &out)?;
            self.end_turn(&mut session, &out, &turn)?;
            left.push(Left { key, session, turn });
        }
        Ok(left)
    }

    fn decoding(&self) -> usize {
        self.decoding.len()
    }

    fn push_assistant(&mut self, s: &mut QwenSession, text: &str) -> Result<()> {
        self.begin_turn(s)?;
        let mut ids = self.tokenizer.encode(text)?;
        ids.push(self.tokenizer.im_end);
        let zeros = vec![0.0; ids.len()];
        self.append(s, &ids, Vec::new(), Some(&zeros))?;
        let rest = self.closer_rest.clone();
        self.append(s, &rest, Vec::new(), None)?;
        s.messages.push(ChatTokenizer::assistant_message(text));
        Ok(())
    }

    fn transcript<'s>(&self, session: &'s QwenSession) -> &'s Transcript {
        &session.transcript
    }

    /// Ids only the chat template places around images: a sampled one would
    /// stand for an image the turn does not hold.
    fn vision_placeholders(&self) -> Vec<i64> {
        let c = &self.model.cfg;
        vec![
            c.image_token_id,
            c.video_token_id,
            c.vision_start_token_id,
            c.vision_end_token_id,
        ]
    }
}

impl TrainablePolicy for QwenVlPolicy {
    fn score(
        &mut self,
        batch: &[&Transcript],
        temperature: f64,
        with_entropy: bool,
    ) -> Result<TokenScores> {
        ensure!(temperature > 0.0, "scoring temperature must be positive");
        let b = self.batch(&self.model, batch)?;
        scoring::score(
            &self.model,
            &b,
            temperature,
            with_entropy,
            Mode::TRAIN,
            self.vision_grad(),
        )
    }

    fn score_reference(&mut self, batch: &[&Transcript], temperature: f64) -> Result<Tensor> {
        ensure!(temperature > 0.0, "scoring temperature must be positive");
        let (model, mode) = self.reference_model();
        let b = self.batch(model, batch)?;
        tch::no_grad(|| scoring::score(model, &b, temperature, false, mode, false))
            .map(|s| s.logprobs)
    }

    fn trainable_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        if self.opts.lora.is_some() {
            for layer in &self.model.text.layers {
                for (_, lin) in layer.linears() {
                    if let Some(l) = &lin.lora {
                        out.push((format!("{}.lora_A.weight", lin.name), l.a.shallow_clone()));
                        out.push((format!("{}.lora_B.weight", lin.name), l.b.shallow_clone()));
                    }
                }
            }
        } else {
            for (n, t) in &self.model.params {
                if t.requires_grad() {
                    out.push((n.clone(), t.shallow_clone()));
                }
            }
        }
        out
    }

    fn backward_scores(
        &mut self,
        batch: &[&Transcript],
        temperature: f64,
        with_entropy: bool,
        loss: &mut dyn FnMut(&TokenScores) -> Result<Tensor>,
    ) -> Result<()> {
        if !self.opts.gradient_checkpointing {
            let scores = self.score(batch, temperature, with_entropy)?;
            loss(&scores)?.backward();
            return Ok(());
        }
        ensure!(temperature > 0.0, "scoring temperature must be positive");
        let b = self.batch(&self.model, batch)?;
        let dropout = self.opts.lora.as_ref().is_some_and(|l| l.dropout > 0.0);
        self.dropout_calls += 1;
        let base = self.dropout_calls.wrapping_mul(0x9E37_79B9) as i64;
        let reseed = move |l: usize| {
            if dropout {
                tch::manual_seed(base.wrapping_add(l as i64));
            }
        };
        let embed_grad = self.opts.lora.is_none();
        scoring::backward_checkpointed(
            &self.model,
            &b,
            temperature,
            with_entropy,
            Mode::TRAIN,
            embed_grad,
            self.vision_grad(),
            &reseed,
            loss,
        )
    }

    fn device(&self) -> Device {
        self.opts.device
    }

    fn export(&self, dir: &Path) -> Result<()> {
        self.save_pretrained(dir)
    }

    /// Every weight in the run's dtype (frozen ones too), plus the files
    /// copied beside them.
    fn export_bytes(&self) -> u64 {
        let files: u64 = self
            .tokenizer
            .files
            .iter()
            .map(|f| crate::train::disk::file_bytes(f))
            .sum();
        crate::train::disk::tensor_bytes(&self.model.params) + files
    }

    /// CPU only, and neither LoRA (its dropout draws from torch's global
    /// RNG) nor gradient checkpointing (it reseeds that RNG).
    fn replica(&self) -> Result<Option<Self>> {
        if self.opts.device != Device::Cpu
            || self.opts.lora.is_some()
            || self.opts.gradient_checkpointing
        {
            return Ok(None);
        }
        let copy = self
            .model
            .params
            .iter()
            .map(|(n, t)| (n.clone(), t.detach().copy()))
            .collect();
        let model = QwenVl::new(
            self.model.cfg.clone(),
            Source::Loaded(copy),
            self.opts.dtype,
            self.opts.device,
        )?;
        // Built from the same config: the same parameters in the same order.
        for ((_, src), (_, dst)) in self.model.params.iter().zip(&model.params) {
            let _ = dst.set_requires_grad(src.requires_grad());
        }
        Ok(Some(Self {
            model,
            reference: None,
            tokenizer: ChatTokenizer::from_dir(&self.dir)?,
            processor: self.processor.clone(),
            opts: self.opts.clone(),
            dir: self.dir.clone(),
            closer_rest: self.closer_rest.clone(),
            gen_prompt: self.gen_prompt.clone(),
            stop_ids: self.stop_ids.clone(),
            dropout_calls: 0,
            last_stats: GenStats::default(),
            continuous: None,
            decoding: HashMap::new(),
        }))
    }
}

impl std::fmt::Debug for QwenVlPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QwenVlPolicy")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish()
    }
}

/// A finished row as a turn: its text without the id that ended it.
fn turn_output(tokenizer: &ChatTokenizer, out: &Generated) -> Result<TurnOutput> {
    let body = if out.stopped {
        &out.ids[..out.ids.len() - 1]
    } else {
        &out.ids[..]
    };
    Ok(TurnOutput {
        text: tokenizer.decode(body, false)?,
        token_ids: out.ids.clone(),
        logprobs: out.logprobs.clone(),
        finish: if out.stopped {
            FinishReason::Stop
        } else {
            FinishReason::Length
        },
    })
}

/// generation_config.json's `eos_token_id`: absent, one id, or a list.
fn eos_ids(json: &Value) -> Result<Vec<i64>> {
    match json.get("eos_token_id") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Number(n)) => Ok(vec![n.as_i64().context("not an integer id")?]),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|v| v.as_i64().context("not a list of integer ids"))
            .collect(),
        Some(other) => anyhow::bail!("{other} is neither an id nor a list of ids"),
    }
}
