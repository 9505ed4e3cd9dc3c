//! GRPO advantages: each trajectory's reward against its group (the n
//! rollouts of one prompt).

/// (r − mean)/(std + ε) within each consecutive group of `group_size`
/// rewards, or r − mean without std normalisation (Dr. GRPO). `std` is the
/// unbiased estimate, as `torch.std`; a group of one gets advantage 0.
pub fn group_advantages(
    rewards: &[f64],
    group_size: usize,
    norm_by_std: bool,
    eps: f64,
) -> Vec<f64> {
    assert!(
        group_size > 0 && rewards.len().is_multiple_of(group_size),
        "rewards must fill whole groups"
    );
    let mut out = Vec::with_capacity(rewards.len());
    for group in rewards.chunks(group_size) {
        let n = group.len() as f64;
        let mean = group.iter().sum::<f64>() / n;
        let std = if group.len() > 1 {
            (group.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            1.0
        };
        out.extend(group.iter().map(|r| {
            let centred = if group.len() > 1 { r - mean } else { 0.0 };
            if norm_by_std {
                centred / (std + eps)
            } else {
                centred
            }
        }));
    }
    out
}

/// For each group, whether its rewards differ: groups whose rewards are all
/// equal have zero advantage and carry no policy-gradient signal.
pub fn informative_groups(rewards: &[f64], group_size: usize) -> Vec<bool> {
    assert!(
        group_size > 0 && rewards.len().is_multiple_of(group_size),
        "rewards must fill whole groups"
    );
    rewards
        .chunks(group_size)
        .map(|g| g.iter().any(|r| (r - g[0]).abs() > 1e-12))
        .collect()
}

/// Per-trajectory weights ∝ n_s^(−γ) for a trajectory of data source s
/// with n_s trajectories in the batch, scaled to a mean of 1. γ = 1 gives
/// each source the same total weight, γ = 0 leaves every weight at 1.
/// Scaling advantages by them keeps the majority source from setting alone
/// a decision the sources share.
pub fn source_balance_weights(sources: &[&str], gamma: f64) -> Vec<f64> {
    let mut counts: std::collections::HashMap<&str, usize> = Default::default();
    for s in sources {
        *counts.entry(s).or_default() += 1;
    }
    let raw: Vec<f64> = sources
        .iter()
        .map(|s| (counts[s] as f64).powf(-gamma))
        .collect();
    let mean = raw.iter().sum::<f64>() / raw.len().max(1) as f64;
    raw.iter().map(|w| w / mean).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    }

    #[test]
    fn normalised_per_group() {
        // Group 1: mean 0.5, unbiased std = sqrt(1/3).
        let r = [1.0, 0.0, 1.0, 0.0, 0.2, 0.2, 0.2, 0.2];
        let a = group_advantages(&r, 4, true, 1e-6);
        let s = (1.0f64 / 3.0).sqrt() + 1e-6;
        assert!(
            close(&a[..4], &[0.5 / s, -0.5 / s, 0.5 / s, -0.5 / s]),
            "{a:?}"
        );
        assert!(close(&a[4..], &[0.0; 4]));
        for g in a.chunks(4) {
            assert!(g.iter().sum::<f64>().abs() < 1e-9);
        }
    }

    #[test]
    fn eps_keeps_equal_groups_finite_and_no_std_option() {
        let a = group_advantages(&[0.3, 0.3], 2, true, 1e-6);
        assert!(a.iter().all(|x| x.is_finite() && *x == 0.0));
        let a = group_advantages(&[1.0, 0.0, 0.5], 3, false, 1e-6);
        assert!(close(&a, &[0.5, -0.5, 0.0]));
    }

    #[test]
    fn singleton_groups_get_zero() {
        assert!(close(
            &group_advantages(&[0.7, 0.1], 1, true, 1e-6),
            &[0.0, 0.0]
        ));
    }

    #[test]
    fn filters_constant_groups() {
        assert_eq!(
            informative_groups(&[1.0, 1.0, 0.0, 1.0, 0.1, 0.1], 2),
            vec![false, true, false]
        );
    }

    #[test]
    fn balanced_sources_weigh_the_same_in_total() {
        let sources = ["req", "req", "free", "req", "req", "free"];
        // 4 req and 2 free over 6: with γ = 1 each source totals 3.
        let w = source_balance_weights(&sources, 1.0);
        assert!(close(&w, &[0.75, 0.75, 1.5, 0.75, 0.75, 1.5]), "{w:?}");
        assert!(close(&source_balance_weights(&sources, 0.0), &[1.0; 6]));
        // γ = 0.5: weights ∝ 1/√n, so free/req = √2, and still a mean of 1.
        let half = source_balance_weights(&sources, 0.5);
        assert!((half[2] / half[0] - 2f64.sqrt()).abs() < 1e-9, "{half:?}");
        assert!((half.iter().sum::<f64>() - 6.0).abs() < 1e-9);
        assert!(close(
            &source_balance_weights(&["a", "a"], 1.0),
            &[1.0, 1.0]
        ));
        assert!(source_balance_weights(&[], 1.0).is_empty());
    }
}
