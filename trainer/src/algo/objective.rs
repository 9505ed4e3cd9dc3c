//! The GRPO objective for one micro-batch: clipped policy loss, plus
//! β·KL(π‖π_ref) (k3), minus the entropy bonus, each summed over the
//! generated tokens with the mini-batch's weights (`aggregate`), so
//! micro-batches add up to the mini-batch's loss.

use super::loss::{clipped_policy_loss, low_var_kl};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveConfig {
    pub clip_low: f64,
    pub clip_high: f64,
    pub kl_coef: f64,
    pub entropy_coef: f64,
}

/// Tensors of one micro-batch, all [B, T] and aligned with the tokens.
pub struct MicroBatch<'a> {
    pub logp: &'a Tensor,
    pub old_logp: &'a Tensor,
    pub ref_logp: Option<&'a Tensor>,
    pub entropy: Option<&'a Tensor>,
    pub advantages: &'a Tensor,
    pub mask: &'a Tensor,
    /// [B, 1]: each row's token weight over the whole mini-batch
    /// (`token_weights`).
    pub weights: &'a Tensor,
}

/// The loss to back-propagate and its parts, each as this micro-batch's share
/// of the mini-batch's aggregate (so parts add up over micro-batches).
pub struct ObjectiveTerms {
    pub loss: Tensor,
    pub policy: f64,
    pub kl: f64,
    pub entropy: f64,
    pub clip_frac: f64,
}

pub fn grpo_objective(b: &MicroBatch, cfg: &ObjectiveConfig) -> ObjectiveTerms {
    let w = b.mask * b.weights;
    let agg = |x: &Tensor| (x * &w).sum(Kind::Float);
    let (pg, clipped) = clipped_policy_loss(
        b.logp,
        b.old_logp,
        b.advantages,
        cfg.clip_low,
        cfg.clip_high,
    );
    let policy = agg(&pg);
    let mut loss = policy.shallow_clone();
    let kl = b.ref_logp.map(|r| agg(&low_var_kl(b.logp, r)));
    if let Some(kl) = &kl
        && cfg.kl_coef != 0.0
    {
        loss += kl * cfg.kl_coef;
    }
    let entropy = b.entropy.map(agg);
    if let Some(ent) = &entropy
        && cfg.entropy_coef != 0.0
    {
        loss -= ent * cfg.entropy_coef;
    }
    let scalar =
        |t: Option<&Tensor>| t.map_or(0.0, |t| t.detach().to_kind(Kind::Double).double_value(&[]));
    ObjectiveTerms {
        policy: scalar(Some(&policy)),
        kl: scalar(kl.as_ref()),
        entropy: scalar(entropy.as_ref()),
        clip_frac: scalar(Some(&agg(&clipped))),
        loss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::{LossAgg, token_weights};

    fn cfg() -> ObjectiveConfig {
        ObjectiveConfig {
            clip_low: 0.2,
            clip_high: 0.28,
            kl_coef: 0.5,
            entropy_coef: 0.1,
        }
    }

    fn weights_of(mask: &Tensor, agg: LossAgg) -> Tensor {
        let lens: Vec<usize> = Vec::<f32>::try_from(mask.sum_dim_intlist(1, false, Kind::Float))
            .unwrap()
            .iter()
            .map(|&l| l as usize)
            .collect();
        let w: Vec<f32> = token_weights(&lens, agg, 8)
            .iter()
            .map(|&w| w as f32)
            .collect();
        Tensor::from_slice(&w).view([lens.len() as i64, 1])
    }

    /// Splitting a mini-batch into micro-batches gives the same gradient as
    /// one pass, in every aggregation mode: the weights are the mini-batch's.
    #[test]
    fn micro_batches_accumulate_to_the_full_batch_gradient() {
        for agg in [
            LossAgg::TokenMean,
            LossAgg::SeqMeanTokenMean,
            LossAgg::SeqMeanTokenSumNorm,
        ] {
            accumulates(agg);
        }
    }

    fn accumulates(agg: LossAgg) {
        tch::manual_seed(0);
        let base = Tensor::randn([4, 6], (Kind::Float, tch::Device::Cpu)) * 0.1 - 1.0;
        let old = (&base + Tensor::randn([4, 6], (Kind::Float, tch::Device::Cpu)) * 0.05).detach();
        let reference = (&base + 0.1).detach();
        let ent = Tensor::rand([4, 6], (Kind::Float, tch::Device::Cpu));
        let adv = Tensor::from_slice(&[1.0f32, -0.5, 0.3, -0.8])
            .view([4, 1])
            .expand([4, 6], false);
        let mask = Tensor::from_slice(&[
            0f32, 1., 1., 1., 0., 0., //
            0., 0., 1., 1., 1., 1., //
            0., 1., 0., 1., 0., 1., //
            1., 1., 1., 1., 1., 1.,
        ])
        .view([4, 6]);
        let weights = weights_of(&mask, agg);
        let run = |splits: &[(i64, i64)]| {
            let logp = base.copy().set_requires_grad(true);
            let mut kl = 0.0;
            for &(s, e) in splits {
                let sl = |t: &Tensor| t.narrow(0, s, e - s);
                let lp = logp.narrow(0, s, e - s);
                let (o, r, en, a, m) = (sl(&old), sl(&reference), sl(&ent), sl(&adv), sl(&mask));
                let w = sl(&weights);
                let mb = MicroBatch {
                    logp: &lp,
                    old_logp: &o,
                    ref_logp: Some(&r),
                    entropy: Some(&en),
                    advantages: &a,
                    mask: &m,
                    weights: &w,
                };
                let t = grpo_objective(&mb, &cfg());
                kl += t.kl;
                t.loss.backward();
            }
            (logp.grad(), kl)
        };
        let (g_full, kl_full) = run(&[(0, 4)]);
        let (g_micro, kl_micro) = run(&[(0, 1), (1, 3), (3, 4)]);
        assert!(g_full.allclose(&g_micro, 1e-6, 1e-7, false), "{agg:?}");
        assert!((kl_full - kl_micro).abs() < 1e-9, "{agg:?}");
        // Masked tokens get no gradient.
        let masked = g_full.masked_select(&mask.eq(0.0));
        assert_eq!(masked.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn kl_pulls_towards_the_reference() {
        let logp = Tensor::from_slice(&[-2.0f32])
            .view([1, 1])
            .set_requires_grad(true);
        let old = logp.detach();
        let reference = Tensor::from_slice(&[-1.0f32]).view([1, 1]);
        let zero = Tensor::zeros([1, 1], (Kind::Float, tch::Device::Cpu));
        let mask = Tensor::ones([1, 1], (Kind::Float, tch::Device::Cpu));
        let mb = MicroBatch {
            logp: &logp,
            old_logp: &old,
            ref_logp: Some(&reference),
            entropy: None,
            advantages: &zero,
            mask: &mask,
            weights: &mask,
        };
        let t = grpo_objective(&mb, &cfg());
        assert!(t.kl > 0.0);
        t.loss.backward();
        // Raising logp towards ref lowers the loss.
        assert!(logp.grad().double_value(&[0, 0]) < 0.0);
    }
}
