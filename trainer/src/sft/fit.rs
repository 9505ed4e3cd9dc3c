//! The SFT update: token-mean negative log-likelihood over the response
//! mask (the assistant's tokens only), micro-batched through
//! `backward_scores`, AdamW with gradient clipping and the LR schedule of
//! `algo`, for a number of epochs or steps, in a seeded order.

use crate::algo::{AdamW, AdamWConfig, LrSchedule, clip_grad_norm, masked_sum_over};
use crate::data::DataCursor;
use crate::parallel::Replicas;
use crate::policy::{TokenScores, TrainablePolicy, Transcript};
use crate::train::checkpoint::{self, Checkpoint, CheckpointState};
use crate::train::config::TrainConfig;
use crate::train::metrics::MetricsLog;
use crate::train::{StopPoint, StopRequest, Stopped};
use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Optimizer steps; 0: `epochs` passes over the data.
    pub total_steps: usize,
    pub epochs: usize,
    /// Trajectories per optimizer step (at most the data size).
    pub batch_size: usize,
    pub micro_batch: usize,
    pub seed: u64,
    pub shuffle: bool,
    pub lr: f64,
    pub warmup_steps: usize,
    pub decay: crate::algo::Decay,
    pub min_lr_ratio: f64,
    pub adamw: AdamWConfig,
    /// Max global gradient norm (0: no clipping).
    pub grad_clip: f64,
    /// β: the loss is the masked token-mean of NLL − β·entropy (0: NLL).
    pub confidence_penalty: f64,
    /// Threads that share each step's micro-batches, each with its own copy
    /// of the model and a share of torch's intra-op threads (1: off; the CPU
    /// only). Their gradients are summed in the order one thread would add
    /// them, so the update is that of one thread with as many torch
    /// threads as each copy gets.
    pub data_parallel: usize,
}

impl FitOptions {
    pub fn steps(&self, data: usize) -> usize {
        if self.total_steps > 0 {
            self.total_steps
        } else {
            (data * self.epochs).div_ceil(self.batch(data)).max(1)
        }
    }

    fn batch(&self, data: usize) -> usize {
        self.batch_size.min(data).max(1)
    }
}

/// Where a fit writes its checkpoints (the trainer's format: weights,
/// optimizer moments, data cursor, step), and the one it continues from.
pub struct FitCheckpoints<'a> {
    pub root: PathBuf,
    /// Steps between checkpoints; 0: none.
    pub every: usize,
    /// Newest checkpoints kept; 0: all.
    pub keep: usize,
    /// Written into each checkpoint.
    pub config: &'a TrainConfig,
    /// The train set's fingerprint: a checkpoint resumes only on its data.
    pub data: String,
    pub resume: Option<Checkpoint>,
    /// Checked between steps: once requested, the step reached is
    /// checkpointed and the fit returns [`Stopped`].
    pub stop: StopRequest,
}

/// One optimizer step's numbers, as written to `metrics.jsonl` under `sft/`.
#[derive(Clone, Debug, Serialize)]
pub struct StepMetrics {
    /// Token-mean NLL of the step's batch, before the update.
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: usize,
    pub epoch: u64,
    /// Masked token-mean entropy of the step's batch, when the confidence
    /// penalty asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f64>,
}

#[derive(Serialize)]
struct Line<'a> {
    step: usize,
    sft: &'a StepMetrics,
}

/// The mask as a float tensor [B, L] (L = the longest transcript).
fn mask_tensor(batch: &[&Transcript], device: tch::Device) -> Tensor {
    let len = batch
        .iter()
        .map(|t| t.tokens.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let mut m = vec![0f32; batch.len() * len];
    for (i, t) in batch.iter().enumerate() {
        for (j, &v) in t.response_mask.iter().enumerate() {
            m[i * len + j] = f32::from(v);
        }
    }
    Tensor::from_slice(&m)
        .view([batch.len() as i64, len as i64])
        .to_device(device)
}

/// Mean NLL per response token of `batch` under the current weights (no
/// update): the number the loss tracks, for checks before and after.
pub fn mean_nll<P: TrainablePolicy>(policy: &mut P, batch: &[&Transcript]) -> Result<f64> {
    token_mean(policy, batch, false, |s| Ok(nll_of(s)))
}

/// Mean entropy per response token of `batch` under the current weights:
/// what the confidence penalty raises.
pub fn mean_entropy<P: TrainablePolicy>(policy: &mut P, batch: &[&Transcript]) -> Result<f64> {
    token_mean(policy, batch, true, entropy_of)
}

/// The masked token mean of a per-token quantity of `batch`'s scores.
fn token_mean<P: TrainablePolicy>(
    policy: &mut P,
    batch: &[&Transcript],
    with_entropy: bool,
    per_token: impl Fn(&TokenScores) -> Result<Tensor>,
) -> Result<f64> {
    let tokens: usize = batch.iter().map(|t| t.response_len()).sum();
    tch::no_grad(|| {
        let scores = policy.score(batch, 1.0, with_entropy)?;
        let mask = mask_tensor(batch, policy.device());
        Ok(masked_sum_over(&per_token(&scores)?, &mask, tokens as f64).double_value(&[]))
    })
}

fn nll_of(scores: &TokenScores) -> Tensor {
    -scores.logprobs.to_kind(Kind::Float)
}

fn entropy_of(scores: &TokenScores) -> Result<Tensor> {
    match &scores.entropy {
        Some(h) => Ok(h.to_kind(Kind::Float)),
        None => bail!("the policy gave no entropy when asked for it"),
    }
}

/// Trains `policy` on `data`; `on_step` sees each step's numbers (and
/// `metrics`, when given, gets them as JSON lines). With `checkpoints`
/// resuming, it continues from that checkpoint's step, and the log keeps
/// only the lines before it, so it reads as one uninterrupted run. Returns
/// the steps run by this call.
pub fn fit<P: TrainablePolicy>(
    policy: &mut P,
    data: &[Transcript],
    opts: &FitOptions,
    metrics: Option<&Path>,
    checkpoints: Option<FitCheckpoints>,
    on_step: &mut dyn FnMut(usize, &StepMetrics),
) -> Result<Vec<StepMetrics>> {
    if data.is_empty() {
        bail!("no SFT data");
    }
    if opts.micro_batch == 0 {
        bail!("micro_batch must be at least 1");
    }
    let steps = opts.steps(data.len());
    let batch = opts.batch(data.len());
    let schedule = LrSchedule {
        lr: opts.lr,
        warmup_steps: opts.warmup_steps,
        total_steps: steps,
        decay: opts.decay,
        min_lr_ratio: opts.min_lr_ratio,
    };
    let params = policy.trainable_parameters();
    let tensors: Vec<Tensor> = params.iter().map(|(_, t)| t.shallow_clone()).collect();
    let mut opt = AdamW::new(params, opts.adamw.clone());
    let mut cursor = DataCursor::new(opts.seed, opts.shuffle);
    let mut start = 0;
    if let Some((ck, now)) = checkpoints
        .as_ref()
        .and_then(|c| Some((c.resume.as_ref()?, &c.data)))
    {
        let what = format!("checkpoint {}", ck.dir.display());
        ensure!(
            &ck.state.data == now,
            "{what} was trained on other data ({}; now {now})",
            ck.state.data
        );
        ensure!(
            ck.state.step <= steps,
            "{what} is at step {}, past this run's {steps} steps",
            ck.state.step
        );
        checkpoint::restore(
            &ck.weights,
            &policy.trainable_parameters(),
            &format!("{what}: weights"),
        )?;
        opt.load_state(ck.state.optimizer_steps, &ck.optimizer)
            .with_context(|| format!("{what}: optimizer"))?;
        cursor = ck.state.cursor.clone();
        start = ck.state.step;
        tracing::info!(checkpoint = %ck.dir.display(), step = start, "resuming the SFT fit");
    }
    let mut log = match metrics {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // Lines are 0-based: line k holds step k, so k < start stay.
            Some(match start {
                0 => MetricsLog::create(path)?,
                s => MetricsLog::resume(path, s - 1)?,
            })
        }
        None => None,
    };
    let mut replicas = Replicas::new(policy, opts.data_parallel, "sft")?;
    let mut history = Vec::with_capacity(steps - start);
    for step in start..steps {
        if let Some(c) = checkpoints.as_ref().filter(|c| c.stop.is_requested()) {
            let checkpoint = if step > start {
                if c.every == 0 || !step.is_multiple_of(c.every) {
                    save(c, step, &cursor, &opt, policy)?;
                }
                Some(c.root.join(checkpoint::dir_name(step)))
            } else {
                c.resume.as_ref().map(|ck| ck.dir.clone())
            };
            return Err(Stopped {
                what: "SFT",
                at: StopPoint::Step { step, total: steps },
                checkpoint,
            }
            .into());
        }
        let epoch = cursor.epoch;
        let idx = cursor.next_batch(data.len(), batch);
        let mut picked: Vec<&Transcript> = idx.iter().map(|&i| &data[i]).collect();
        // Micro-batches of similar lengths pad less; the step's loss is the same sum.
        picked.sort_by_key(|t| t.tokens.len());
        let tokens: usize = picked.iter().map(|t| t.response_len()).sum();
        opt.zero_grad();
        let mut loss_sum = 0.0;
        let mut entropy_sum = 0.0;
        let beta = opts.confidence_penalty;
        let micros: Vec<&[&Transcript]> = picked.chunks(opts.micro_batch).collect();
        let padded =
            |m: &&[&Transcript]| m.len() * m.iter().map(|t| t.tokens.len()).max().unwrap_or(0);
        for (nll, h) in replicas.backward_each(policy, &micros, padded, |p, micro| {
            micro_backward(p, micro, tokens, beta)
        })? {
            loss_sum += nll;
            entropy_sum += h;
        }
        if !loss_sum.is_finite() {
            bail!("SFT step {step}: loss is {loss_sum} (lower actor.lr?)");
        }
        let grad_norm = clip_grad_norm(&tensors, opts.grad_clip);
        let lr = schedule.at(step);
        opt.step(lr);
        replicas.sync(policy);
        let m = StepMetrics {
            loss: loss_sum,
            lr,
            grad_norm,
            tokens,
            epoch,
            entropy: (beta > 0.0).then_some(entropy_sum),
        };
        if let Some(log) = log.as_mut() {
            log.append(&Line { step, sft: &m })?;
        }
        if let Some(c) = checkpoints
            .as_ref()
            .filter(|c| c.every > 0 && (step + 1) % c.every == 0)
        {
            save(c, step + 1, &cursor, &opt, policy)?;
        }
        on_step(step, &m);
        history.push(m);
    }
    opt.zero_grad();
    Ok(history)
}

/// A checkpoint after `steps` steps, then the oldest pruned.
fn save<P: TrainablePolicy>(
    c: &FitCheckpoints,
    steps: usize,
    cursor: &DataCursor,
    opt: &AdamW,
    policy: &P,
) -> Result<()> {
    let state = CheckpointState::new(
        steps,
        cursor.clone(),
        opt.steps_taken(),
        cursor.seed,
        c.data.clone(),
    );
    checkpoint::save_and_prune(
        &c.root,
        c.config,
        state,
        &policy.trainable_parameters(),
        &opt.state_tensors(),
        c.keep,
        None,
    )?;
    Ok(())
}

/// One micro-batch's forward and backward: its token-mean NLL and entropy
/// (over the step's token count, so micro-batches add up to the step's mean).
fn micro_backward<P: TrainablePolicy>(
    policy: &mut P,
    micro: &[&Transcript],
    tokens: usize,
    beta: f64,
) -> Result<(f64, f64)> {
    let mask = mask_tensor(micro, policy.device());
    let (mut nll_sum, mut h_sum) = (0.0, 0.0);
    policy.backward_scores(micro, 1.0, beta > 0.0, &mut |scores| {
        let nll = masked_sum_over(&nll_of(scores), &mask, tokens as f64);
        nll_sum = nll.double_value(&[]);
        if beta == 0.0 {
            return Ok(nll);
        }
        let h = masked_sum_over(&entropy_of(scores)?, &mask, tokens as f64);
        h_sum = h.double_value(&[]);
        Ok(nll - h * beta)
    })?;
    Ok((nll_sum, h_sum))
}
