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

/// Per-trajectory weights that give each data source the same total weight
/// in a batch, with a mean weight of 1: N / (S · n_s) for a trajectory of
/// source s, with S sources and n_s trajectories of s. Scaling advantages by
/// them keeps the majority source from setting a decision the sources share.
pub fn source_balance_weights(sources: &[&str]) -> Vec<f64> {
    let mut counts: std::collections::HashMap<&str, usize> = Default::default();
    for s in sources {
        *counts.entry(s).or_default() += 1;
    }
    let per_source = sources.len() as f64 / counts.len().max(1) as f64;
    sources
        .iter()
        .map(|s| per_source / counts[s] as f64)
        .collect()
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
        let w = source_balance_weights(&["req", "req", "free", "req", "req", "free"]);
        // 4 req and 2 free over 6: each source totals 3.
        assert!(close(&w, &[0.75, 0.75, 1.5, 0.75, 0.75, 1.5]), "{w:?}");
        assert!(close(&source_balance_weights(&["a", "a"]), &[1.0, 1.0]));
        assert!(source_balance_weights(&[]).is_empty());
    }
}
