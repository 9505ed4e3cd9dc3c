//! How per-token losses of a mini-batch become one number (veRL's
//! `loss_agg_mode`), as a weight on each sequence's tokens.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossAgg {
    /// Every generated token weighs the same: long trajectories (several
    /// searches) outweigh short ones (a direct answer).
    #[default]
    TokenMean,
    /// Each sequence's token mean, then the mean over sequences: every
    /// trajectory weighs the same, whatever its length.
    SeqMeanTokenMean,
    /// Each sequence's token sum over a constant (the response budget),
    /// then the mean over sequences (Dr. GRPO): no length normalisation.
    /// veRL's mode of this name sums over sequences instead: the same
    /// direction, n times the size.
    SeqMeanTokenSumNorm,
}

/// The weight of each token of sequence i, for `lens[i]` generated tokens
/// in the mini-batch; the loss is Σᵢ wᵢ · Σ_t ℓᵢₜ. `budget` is
/// `SeqMeanTokenSumNorm`'s constant. Sequences with no generated token get 0.
pub fn token_weights(lens: &[usize], agg: LossAgg, budget: usize) -> Vec<f64> {
    let n = lens.len().max(1) as f64;
    let total: usize = lens.iter().sum();
    lens.iter()
        .map(|&len| match (len, agg) {
            (0, _) => 0.0,
            (_, LossAgg::TokenMean) => 1.0 / total as f64,
            (len, LossAgg::SeqMeanTokenMean) => 1.0 / (n * len as f64),
            (_, LossAgg::SeqMeanTokenSumNorm) => 1.0 / (n * budget.max(1) as f64),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weighted(losses: &[Vec<f64>], agg: LossAgg, budget: usize) -> f64 {
        let lens: Vec<usize> = losses.iter().map(Vec::len).collect();
        token_weights(&lens, agg, budget)
            .iter()
            .zip(losses)
            .map(|(w, l)| w * l.iter().sum::<f64>())
            .sum()
    }

    #[test]
    fn each_mode_is_the_mean_it_names() {
        // A direct answer (2 tokens) and a searching trajectory (6 tokens).
        let losses = vec![vec![1.0, 1.0], vec![4.0; 6]];
        let token_mean = weighted(&losses, LossAgg::TokenMean, 0);
        assert!((token_mean - 26.0 / 8.0).abs() < 1e-12);
        let seq_mean = weighted(&losses, LossAgg::SeqMeanTokenMean, 0);
        assert!((seq_mean - (1.0 + 4.0) / 2.0).abs() < 1e-12);
        let sum_norm = weighted(&losses, LossAgg::SeqMeanTokenSumNorm, 10);
        assert!((sum_norm - (2.0 / 10.0 + 24.0 / 10.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn short_sequences_weigh_more_per_token_only_when_asked() {
        let w = token_weights(&[2, 6], LossAgg::TokenMean, 0);
        assert_eq!(w[0], w[1]);
        let w = token_weights(&[2, 6], LossAgg::SeqMeanTokenMean, 0);
        assert!((w[0] / w[1] - 3.0).abs() < 1e-12);
        let w = token_weights(&[2, 6], LossAgg::SeqMeanTokenSumNorm, 16);
        assert_eq!(w[0], w[1]);
    }

    #[test]
    fn empty_sequences_weigh_nothing() {
        for agg in [
            LossAgg::TokenMean,
            LossAgg::SeqMeanTokenMean,
            LossAgg::SeqMeanTokenSumNorm,
        ] {
            let w = token_weights(&[0, 3], agg, 8);
            assert_eq!(w[0], 0.0);
            assert!(w[1].is_finite() && w[1] > 0.0);
        }
        assert!(token_weights(&[], LossAgg::TokenMean, 0).is_empty());
    }
}
