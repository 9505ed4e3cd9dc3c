//! The GRPO update on one scored batch: old log-probs recomputed under
//! no_grad, reference log-probs for the KL term, then `ppo_epochs` ×
//! mini-batches (one optimizer step each) × micro-batches (gradient
//! accumulation through `backward_scores`), gradient clipping and AdamW.

use super::config::AlgoConfig;
use crate::algo::{AdamW, MicroBatch, grpo_objective, token_weights};
use crate::policy::{TrainablePolicy, Transcript};
use anyhow::{Result, ensure};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// What the update needs besides the batch.
pub struct UpdateSettings<'a> {
    pub algo: &'a AlgoConfig,
    /// The rollout temperature: scores use logits / temperature.
    pub temperature: f64,
    /// Max global gradient norm (0: none).
    pub grad_clip: f64,
    pub lr: f64,
    /// `seq-mean-token-sum-norm`'s constant: the rollout's response budget.
    pub response_budget: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateStats {
    /// k3 KL to the reference, aggregated as the loss is (`algo.loss_agg`;
    /// absent when `algo.kl_coef` = 0).
    pub kl: Option<f64>,
    /// Token-mean entropy of the rollout policy on its own tokens.
    pub entropy: Option<f64>,
    pub policy_loss: Option<f64>,
    pub clip_frac: Option<f64>,
    /// Mean global gradient norm over the optimizer steps, before clipping.
    pub grad_norm: Option<f64>,
    pub optimizer_steps: usize,
    /// Optimizer steps skipped for a non-finite gradient.
    pub skipped_updates: usize,
}

fn longest(batch: &[&Transcript]) -> usize {
    batch
        .iter()
        .map(|t| t.tokens.len())
        .max()
        .unwrap_or(1)
        .max(1)
}

/// [B, L] mask of generated tokens, zero-padded.
fn mask_tensor(batch: &[&Transcript], len: usize, device: Device) -> Tensor {
    let mut flat = vec![0f32; batch.len() * len];
    for (i, t) in batch.iter().enumerate() {
        for (j, &m) in t.response_mask.iter().enumerate() {
            flat[i * len + j] = f32::from(m);
        }
    }
    Tensor::from_slice(&flat)
        .view([batch.len() as i64, len as i64])
        .to_device(device)
}

/// Per-token rows, zero-padded to [B, L].
fn padded(rows: &[&Vec<f32>], len: usize, device: Device) -> Tensor {
    let mut flat = vec![0f32; rows.len() * len];
    for (i, r) in rows.iter().enumerate() {
        flat[i * len..i * len + r.len()].copy_from_slice(r);
    }
    Tensor::from_slice(&flat)
        .view([rows.len() as i64, len as i64])
        .to_device(device)
}

/// Splits a [B, L] score tensor into each transcript's own row.
fn rows_of(scores: &Tensor, batch: &[&Transcript]) -> Result<Vec<Vec<f32>>> {
    let len = longest(batch);
    ensure!(
        scores.size() == [batch.len() as i64, len as i64],
        "policy scores have shape {:?}, expected [{}, {len}]",
        scores.size(),
        batch.len()
    );
    let flat = Vec::<f32>::try_from(
        scores
            .detach()
            .to_kind(Kind::Float)
            .to_device(Device::Cpu)
            .flatten(0, -1),
    )?;
    Ok(batch
        .iter()
        .enumerate()
        .map(|(i, t)| flat[i * len..i * len + t.tokens.len()].to_vec())
        .collect())
}

/// `idx` ordered by transcript length (stable), so micro-batches pad less.
fn by_length(batch: &[&Transcript], idx: &[usize]) -> Vec<usize> {
    let mut v = idx.to_vec();
    v.sort_by_key(|&i| batch[i].tokens.len());
    v
}

fn masked_total(x: &Tensor, mask: &Tensor) -> f64 {
    (x.to_kind(Kind::Float) * mask)
        .sum(Kind::Double)
        .double_value(&[])
}

/// One GRPO update of `policy` on `batch` with per-trajectory `advantages`.
/// `params` are the tensors `optim` updates (for gradient clipping).
pub fn grpo_update<P: TrainablePolicy>(
    policy: &mut P,
    optim: &mut AdamW,
    params: &[Tensor],
    batch: &[&Transcript],
    advantages: &[f64],
    s: &UpdateSettings,
) -> Result<UpdateStats> {
    update(policy, optim, params, batch, advantages, s, false)
}

/// `grpo_update`; `recompute` scores the old log-probs in a pass of their
/// own even when the update is on-policy (the tests compare the two).
fn update<P: TrainablePolicy>(
    policy: &mut P,
    optim: &mut AdamW,
    params: &[Tensor],
    batch: &[&Transcript],
    advantages: &[f64],
    s: &UpdateSettings,
    recompute: bool,
) -> Result<UpdateStats> {
    ensure!(
        batch.len() == advantages.len(),
        "{} advantages for {} trajectories",
        advantages.len(),
        batch.len()
    );
    if batch.is_empty() {
        return Ok(UpdateStats::default());
    }
    let device = policy.device();
    let micro = s.algo.micro_batch.max(1);
    let objective = s.algo.objective();

    let mini = if s.algo.mini_batch == 0 {
        batch.len()
    } else {
        s.algo.mini_batch
    };
    // On-policy (one pass, one optimizer step): the weights that sampled are
    // the weights the backward pass runs, on the same micro-batches, so the
    // PPO ratio's denominator is that pass's own log-probs, detached. That
    // saves a forward pass over the batch.
    let on_policy = s.algo.ppo_epochs == 1 && mini >= batch.len() && !recompute;

    // The rollout policy's log-probs (and entropy, for the metric), under
    // the weights that sampled: the PPO ratio's denominator.
    // Micro-batches of similar lengths pad less.
    let by_len = by_length(batch, &(0..batch.len()).collect::<Vec<_>>());
    let mut old: Vec<Vec<f32>> = vec![Vec::new(); batch.len()];
    let (mut ent_sum, mut tokens_all) = (0.0, 0.0);
    if !on_policy {
        for idx in by_len.chunks(micro) {
            let chunk: Vec<&Transcript> = idx.iter().map(|&i| batch[i]).collect();
            let scores = tch::no_grad(|| policy.score(&chunk, s.temperature, true))?;
            let mask = mask_tensor(&chunk, longest(&chunk), device);
            if let Some(e) = &scores.entropy {
                ent_sum += masked_total(e, &mask);
            }
            tokens_all += mask.sum(Kind::Double).double_value(&[]);
            for (&i, row) in idx.iter().zip(rows_of(&scores.logprobs, &chunk)?) {
                old[i] = row;
            }
        }
    }
    let with_ref = s.algo.kl_coef > 0.0;
    let mut reference: Vec<Vec<f32>> = vec![Vec::new(); batch.len()];
    if with_ref {
        for idx in by_len.chunks(micro) {
            let chunk: Vec<&Transcript> = idx.iter().map(|&i| batch[i]).collect();
            let r = policy.score_reference(&chunk, s.temperature)?;
            for (&i, row) in idx.iter().zip(rows_of(&r, &chunk)?) {
                reference[i] = row;
            }
        }
    }

    let order: Vec<usize> = (0..batch.len()).collect();
    let mut stats = UpdateStats::default();
    let (mut pol, mut kl, mut clip, mut norms, mut minis) = (0.0, 0.0, 0.0, 0.0, 0usize);
    for _ in 0..s.algo.ppo_epochs {
        for mb in order.chunks(mini) {
            // Each trajectory's token weight within this mini-batch.
            let lens: Vec<usize> = mb.iter().map(|&i| batch[i].response_len()).collect();
            let mut weight = vec![0.0; batch.len()];
            for (&i, w) in mb
                .iter()
                .zip(token_weights(&lens, s.algo.loss_agg, s.response_budget))
            {
                weight[i] = w;
            }
            optim.zero_grad();
            for part in by_length(batch, mb).chunks(micro) {
                let ts: Vec<&Transcript> = part.iter().map(|&i| batch[i]).collect();
                let len = longest(&ts);
                let old_t = (!on_policy).then(|| {
                    padded(
                        &part.iter().map(|&i| &old[i]).collect::<Vec<_>>(),
                        len,
                        device,
                    )
                });
                let ref_t = with_ref.then(|| {
                    padded(
                        &part.iter().map(|&i| &reference[i]).collect::<Vec<_>>(),
                        len,
                        device,
                    )
                });
                let adv: Vec<f32> = part.iter().map(|&i| advantages[i] as f32).collect();
                let adv = Tensor::from_slice(&adv)
                    .view([part.len() as i64, 1])
                    .to_device(device);
                let mask = mask_tensor(&ts, len, device);
                let w: Vec<f32> = part.iter().map(|&i| weight[i] as f32).collect();
                let w = Tensor::from_slice(&w)
                    .view([part.len() as i64, 1])
                    .to_device(device);
                let want = [part.len() as i64, len as i64];
                let use_entropy = s.algo.entropy_coef != 0.0;
                // On-policy, this pass also gives the entropy metric.
                let with_entropy = use_entropy || on_policy;
                policy.backward_scores(&ts, s.temperature, with_entropy, &mut |scores| {
                    ensure!(
                        scores.logprobs.size() == want,
                        "policy scores have shape {:?}, expected {want:?}",
                        scores.logprobs.size()
                    );
                    let detached;
                    let old_logp = match &old_t {
                        Some(t) => t,
                        None => {
                            detached = scores.logprobs.detach();
                            if let Some(e) = &scores.entropy {
                                ent_sum += masked_total(&e.detach(), &mask);
                            }
                            tokens_all += mask.sum(Kind::Double).double_value(&[]);
                            &detached
                        }
                    };
                    let terms = grpo_objective(
                        &MicroBatch {
                            logp: &scores.logprobs,
                            old_logp,
                            ref_logp: ref_t.as_ref(),
                            entropy: if use_entropy {
                                scores.entropy.as_ref()
                            } else {
                                None
                            },
                            advantages: &adv,
                            mask: &mask,
                            weights: &w,
                        },
                        &objective,
                    );
                    pol += terms.policy;
                    kl += terms.kl;
                    clip += terms.clip_frac;
                    Ok(terms.loss)
                })?;
            }
            minis += 1;
            let norm = crate::algo::clip_grad_norm(params, s.grad_clip);
            if norm.is_finite() {
                optim.step(s.lr);
                stats.optimizer_steps += 1;
                norms += norm;
            } else {
                tracing::warn!(
                    grad_norm = norm,
                    "non-finite gradient; optimizer step skipped"
                );
                stats.skipped_updates += 1;
            }
            optim.zero_grad();
        }
    }
    let per_mini = |x: f64| Some(x / minis.max(1) as f64);
    stats.policy_loss = per_mini(pol);
    stats.clip_frac = per_mini(clip);
    stats.kl = if with_ref { per_mini(kl) } else { None };
    stats.entropy = (tokens_all > 0.0).then(|| ent_sum / tokens_all);
    stats.grad_norm = (stats.optimizer_steps > 0).then(|| norms / stats.optimizer_steps as f64);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::AdamWConfig;
    use crate::algo::LossAgg;
    use crate::policy::{Policy, SampleParams, Segment};
    use crate::testkit::BigramPolicy;

    fn sampled(p: &mut BigramPolicy, n: usize) -> Vec<Transcript> {
        (0..n)
            .map(|i| {
                let mut s = p.open(&[Segment::Text(format!("q{i}"))]).unwrap();
                let params = SampleParams {
                    max_new_tokens: 12,
                    ..Default::default()
                };
                p.generate(&mut [&mut s], &params, i as u64).unwrap();
                p.transcript(&s).clone()
            })
            .collect()
    }

    fn run(algo: &AlgoConfig) -> (Tensor, UpdateStats) {
        run_with(algo, false)
    }

    const ADV: [f64; 6] = [1.0, -1.0, 0.5, -0.5, 2.0, -2.0];

    fn run_with(algo: &AlgoConfig, recompute: bool) -> (Tensor, UpdateStats) {
        let (w, stats, _) = run_full(algo, &ADV, 0, recompute);
        (w, stats)
    }

    /// One update of a fresh bigram policy on six sampled transcripts: the
    /// first weight tensor after it, the stats, and the transcripts' lengths.
    fn run_full(
        algo: &AlgoConfig,
        adv: &[f64],
        response_budget: usize,
        recompute: bool,
    ) -> (Tensor, UpdateStats, Vec<usize>) {
        let mut p = BigramPolicy::new(1, 2.0);
        let ts = sampled(&mut p, adv.len());
        let batch: Vec<&Transcript> = ts.iter().collect();
        let named = p.trainable_parameters();
        let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
        let mut opt = AdamW::new(named, AdamWConfig::default());
        let settings = UpdateSettings {
            algo,
            temperature: 1.0,
            grad_clip: 1.0,
            lr: 1e-2,
            response_budget,
        };
        let stats = update(&mut p, &mut opt, &params, &batch, adv, &settings, recompute).unwrap();
        let lens = ts.iter().map(Transcript::response_len).collect();
        (params[0].detach().copy(), stats, lens)
    }

    /// Each aggregation is token-mean with each trajectory's advantage
    /// scaled by its weight: the weights reach the right rows.
    #[test]
    fn loss_aggregation_weighs_each_trajectory_as_named() {
        let token_mean = AlgoConfig {
            kl_coef: 0.0,
            micro_batch: 4,
            ..Default::default()
        };
        let (w_token, _, lens) = run_full(&token_mean, &ADV, 0, false);
        assert!(
            lens.iter().any(|&l| l != lens[0]),
            "the test needs trajectories of different lengths: {lens:?}"
        );
        let total: usize = lens.iter().sum();
        let n = lens.len() as f64;
        for (agg, budget, per_len) in [
            (LossAgg::SeqMeanTokenMean, 0, None),
            (LossAgg::SeqMeanTokenSumNorm, 40, Some(40.0)),
        ] {
            let algo = AlgoConfig {
                loss_agg: agg,
                ..token_mean.clone()
            };
            let (w_agg, _, _) = run_full(&algo, &ADV, budget, false);
            assert!(!w_agg.allclose(&w_token, 1e-6, 1e-6, false), "{agg:?}");
            let scaled: Vec<f64> = ADV
                .iter()
                .zip(&lens)
                .map(|(a, &l)| a * total as f64 / (n * per_len.unwrap_or(l as f64)))
                .collect();
            let (w_scaled, _, _) = run_full(&token_mean, &scaled, 0, false);
            assert!(
                w_agg.allclose(&w_scaled, 1e-5, 1e-6, false),
                "{agg:?}: weights differ by {}",
                (&w_agg - &w_scaled).abs().max().double_value(&[])
            );
            // Micro-batches still add up to the mini-batch.
            let (w_micro, _, _) = run_full(
                &AlgoConfig {
                    micro_batch: 1,
                    ..algo.clone()
                },
                &ADV,
                budget,
                false,
            );
            assert!(w_micro.allclose(&w_agg, 1e-6, 1e-6, false), "{agg:?}");
        }
    }

    /// On-policy, the old log-probs come from the backward pass itself: the
    /// same update and the same metrics as scoring them in a pass of their own.
    #[test]
    fn on_policy_updates_skip_the_old_log_prob_pass_and_change_nothing() {
        for entropy_coef in [0.0, 0.01] {
            let algo = AlgoConfig {
                micro_batch: 4,
                entropy_coef,
                ..Default::default()
            };
            let (reused, reused_stats) = run_with(&algo, false);
            let (scored, scored_stats) = run_with(&algo, true);
            assert_eq!(reused_stats, scored_stats, "entropy_coef {entropy_coef}");
            assert!(reused_stats.entropy.is_some_and(|e| e > 0.0));
            assert!(
                reused.equal(&scored),
                "weights differ by {}",
                (&reused - &scored).abs().max().double_value(&[])
            );
        }
    }

    /// Micro-batching is only a memory knob: the same mini-batch gives the
    /// same update however it is split.
    #[test]
    fn micro_batches_do_not_change_the_update() {
        let base = AlgoConfig {
            kl_coef: 0.1,
            micro_batch: 6,
            ..Default::default()
        };
        let (w_full, s_full) = run(&base);
        let (w_micro, s_micro) = run(&AlgoConfig {
            micro_batch: 4,
            ..base.clone()
        });
        assert!(w_full.allclose(&w_micro, 1e-6, 1e-6, false));
        assert_eq!(s_full.optimizer_steps, 1);
        assert!((s_full.kl.unwrap() - s_micro.kl.unwrap()).abs() < 1e-9);
        assert_eq!(s_full.kl, Some(0.0), "first step: policy = reference");
        assert!(s_full.entropy.unwrap() > 0.0 && s_full.grad_norm.unwrap() > 0.0);
        // Mini-batches of 2 over 2 epochs: 6 optimizer steps, another result.
        let (w_mini, s_mini) = run(&AlgoConfig {
            mini_batch: 2,
            ppo_epochs: 2,
            ..base
        });
        assert_eq!(s_mini.optimizer_steps, 6);
        assert!(!w_mini.allclose(&w_full, 1e-6, 1e-6, false));
        assert!(s_mini.clip_frac.unwrap() >= 0.0);
    }

    #[test]
    fn the_update_raises_the_likelihood_of_positive_advantages() {
        let algo = AlgoConfig {
            kl_coef: 0.0,
            ..Default::default()
        };
        let mut p = BigramPolicy::new(1, 2.0);
        let ts = sampled(&mut p, 2);
        let batch: Vec<&Transcript> = ts.iter().collect();
        let lp = |p: &mut BigramPolicy, t: &Transcript| {
            let s = p.score(&[t], 1.0, false).unwrap().logprobs;
            let m = mask_tensor(&[t], t.tokens.len(), Device::Cpu);
            masked_total(&s, &m)
        };
        let before = (lp(&mut p, &ts[0]), lp(&mut p, &ts[1]));
        let named = p.trainable_parameters();
        let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
        let mut opt = AdamW::new(named, AdamWConfig::default());
        let settings = UpdateSettings {
            algo: &algo,
            temperature: 1.0,
            grad_clip: 0.0,
            lr: 0.05,
            response_budget: 0,
        };
        let stats =
            grpo_update(&mut p, &mut opt, &params, &batch, &[1.0, -1.0], &settings).unwrap();
        assert_eq!(stats.kl, None);
        let after = (lp(&mut p, &ts[0]), lp(&mut p, &ts[1]));
        assert!(
            after.0 > before.0 && after.1 < before.1,
            "{before:?} → {after:?}"
        );
    }
}
