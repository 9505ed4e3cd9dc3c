//! From a rollout batch to what the update trains on: each trajectory's
//! reward, its group advantage, and which groups carry signal.

use super::config::AlgoConfig;
use super::metrics::{SearchMetrics, SourceMetrics};
use crate::algo::{group_advantages, informative_groups, source_balance_weights};
use crate::reward::{GoldAnswers, RewardBreakdown, RewardConfig, score};
use crate::rollout::Trajectory;
use std::collections::BTreeMap;

pub struct ScoredBatch {
    pub rewards: Vec<RewardBreakdown>,
    pub advantages: Vec<f64>,
    /// Per trajectory: does the update train on it?
    pub keep: Vec<bool>,
    pub filtered_groups: usize,
}

/// `trajectories` come in groups of `group_size` consecutive rollouts of
/// one prompt; `golds[i]` and `sources[i]` belong to trajectory i.
pub fn score_batch(
    trajectories: &[Trajectory],
    golds: &[&GoldAnswers],
    sources: &[&str],
    group_size: usize,
    reward: &RewardConfig,
    algo: &AlgoConfig,
) -> ScoredBatch {
    let rewards: Vec<RewardBreakdown> = trajectories
        .iter()
        .zip(golds)
        .map(|(t, gold)| score(&t.turn_texts(), t.searches(), gold, reward))
        .collect();
    let values: Vec<f64> = rewards.iter().map(|r| r.reward).collect();
    let mut advantages = group_advantages(&values, group_size, algo.norm_adv_by_std, algo.adv_eps);
    if algo.source_balance > 0.0 {
        let weights = source_balance_weights(sources, algo.source_balance);
        for (a, w) in advantages.iter_mut().zip(weights) {
            *a *= w;
        }
    }
    let groups = if algo.filter_equal_groups {
        informative_groups(&values, group_size)
    } else {
        vec![true; values.len() / group_size]
    };
    let keep = groups
        .iter()
        .flat_map(|&g| std::iter::repeat_n(g, group_size))
        .collect();
    ScoredBatch {
        rewards,
        advantages,
        keep,
        filtered_groups: groups.iter().filter(|g| !**g).count(),
    }
}

/// The mean, 0 for none.
pub fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Shares of trajectories that searched.
pub fn search_metrics(trajectories: &[Trajectory]) -> SearchMetrics {
    let share = |f: &dyn Fn(&Trajectory) -> bool| {
        mean(trajectories.iter().map(|t| f64::from(u8::from(f(t)))))
    };
    SearchMetrics {
        ratio: share(&|t| t.searches() > 0),
        image_ratio: share(&|t| t.image_searches > 0),
        text_ratio: share(&|t| t.text_searches > 0),
        per_trajectory: mean(trajectories.iter().map(|t| t.searches() as f64)),
    }
}

/// Reward, accuracy and search ratio per data source; `sources[i]` is
/// trajectory i's.
pub fn source_metrics(
    trajectories: &[Trajectory],
    rewards: &[RewardBreakdown],
    sources: &[&str],
) -> BTreeMap<String, SourceMetrics> {
    let mut out: BTreeMap<String, SourceMetrics> = BTreeMap::new();
    for ((t, r), s) in trajectories.iter().zip(rewards).zip(sources) {
        let m = out.entry(s.to_string()).or_default();
        m.trajectories += 1;
        m.reward += r.reward;
        m.accuracy += r.accuracy;
        m.search_ratio += f64::from(u8::from(t.searches() > 0));
    }
    for m in out.values_mut() {
        let n = m.trajectories as f64;
        m.reward /= n;
        m.accuracy /= n;
        m.search_ratio /= n;
    }
    out
}

/// (reward, accuracy, format) means.
pub fn reward_means(rewards: &[RewardBreakdown]) -> (f64, f64, f64) {
    (
        mean(rewards.iter().map(|r| r.reward)),
        mean(rewards.iter().map(|r| r.accuracy)),
        mean(rewards.iter().map(|r| r.format)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{FinishReason, Transcript};
    use crate::protocol::parse_action;
    use crate::rollout::{EndReason, TurnRecord};

    fn traj(turns: &[&str], img: usize, txt: usize) -> Trajectory {
        Trajectory {
            transcript: Transcript::default(),
            turns: turns
                .iter()
                .map(|t| TurnRecord {
                    text: t.to_string(),
                    token_ids: vec![1],
                    logprobs: vec![0.0],
                    finish: FinishReason::Stop,
                    action: parse_action(t),
                })
                .collect(),
            image_searches: img,
            text_searches: txt,
            tool_errors: 0,
            end: EndReason::Answered,
            observations: Vec::new(),
        }
    }

    #[test]
    fn rewards_groups_and_filtering() {
        let gold = GoldAnswers {
            ground_truth: "Paris".into(),
            candidates: vec![],
        };
        let right = "<reason>r</reason><answer>paris</answer>";
        let wrong = "<reason>r</reason><answer>rome</answer>";
        let img = "<reason>r</reason><search><img></search>";
        let ts = vec![
            traj(&[right], 0, 0),
            traj(&[img, wrong], 1, 0),
            traj(&[wrong], 0, 0),
            traj(&[wrong], 0, 0),
        ];
        let golds = vec![&gold; 4];
        let algo = AlgoConfig {
            filter_equal_groups: true,
            ..Default::default()
        };
        let sources = ["free", "free", "req", "req"];
        let b = score_batch(&ts, &golds, &sources, 2, &RewardConfig::default(), &algo);
        assert_eq!(b.rewards[0].reward, 1.0);
        assert!(
            (b.rewards[1].reward - 0.1).abs() < 1e-12,
            "wrong but well-formed"
        );
        assert!(b.advantages[0] > 0.0 && b.advantages[1] < 0.0);
        assert_eq!(b.advantages[2], 0.0);
        assert_eq!(
            (b.keep, b.filtered_groups),
            (vec![true, true, false, false], 1)
        );
        let s = search_metrics(&ts);
        assert_eq!(
            (s.ratio, s.image_ratio, s.text_ratio, s.per_trajectory),
            (0.25, 0.25, 0.0, 0.25)
        );
        let (r, a, f) = reward_means(&b.rewards);
        assert!(
            (r - 1.3 / 4.0).abs() < 1e-12 && a == 0.25 && f == 1.0,
            "{r} {a} {f}"
        );
        let balanced = AlgoConfig {
            source_balance: 1.0,
            ..algo.clone()
        };
        let sources6 = ["free", "free", "free", "free", "req", "req"];
        let mut ts6 = ts.clone();
        ts6.extend([traj(&[right], 0, 0), traj(&[wrong], 0, 0)]);
        let golds6 = vec![&gold; 6];
        let plain = score_batch(&ts6, &golds6, &sources6, 2, &RewardConfig::default(), &algo);
        let bal = score_batch(
            &ts6,
            &golds6,
            &sources6,
            2,
            &RewardConfig::default(),
            &balanced,
        );
        // 4 free and 2 req: free advantages × 0.75, req × 1.5.
        for (i, w) in [0.75, 0.75, 0.75, 0.75, 1.5, 1.5].iter().enumerate() {
            assert!((bal.advantages[i] - plain.advantages[i] * w).abs() < 1e-12);
        }
        assert!(bal.advantages[4] > plain.advantages[4]);
        let by = source_metrics(&ts, &b.rewards, &["free", "req", "free", "req"]);
        assert_eq!(by.len(), 2);
        let (free, req) = (&by["free"], &by["req"]);
        assert_eq!(
            (free.trajectories, free.accuracy, free.search_ratio),
            (2, 0.5, 0.0)
        );
        assert_eq!(
            (req.trajectories, req.accuracy, req.search_ratio),
            (2, 0.0, 0.5)
        );
        assert!((free.reward - 0.55).abs() < 1e-12, "{}", free.reward);
    }
}
