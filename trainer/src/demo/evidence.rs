//! What `make demo` must show, read off the held-out evals: the directions
//! issue 6 asks for, each a measured comparison that passes or fails. The
//! margins come from the caller, or, over several seeds' runs
//! ([`across_seeds`]), from the seed-to-seed noise those runs measure;
//! nothing here is tuned to pass.

use crate::eval::EvalSummary;
use anyhow::{Result, ensure};
use serde::{Deserialize, Serialize};

/// One comparison and its numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub claim: String,
    pub left: f64,
    pub right: f64,
    /// `left` must exceed `right` by more than this (≥ when `at_least`).
    pub margin: f64,
    pub at_least: bool,
    pub passed: bool,
}

impl Check {
    fn new(claim: &str, left: f64, right: f64, margin: f64, at_least: bool) -> Self {
        Self {
            claim: claim.into(),
            left,
            right,
            margin,
            at_least,
            passed: clears(left, right + margin, at_least),
        }
    }
}

/// Whether `value` clears `bound`: above it, or reaching it when `at_least`.
fn clears(value: f64, bound: f64, at_least: bool) -> bool {
    if at_least {
        value >= bound
    } else {
        value > bound
    }
}

/// The evals the checks read: the SFT warm start and the GRPO policy on the
/// on-demand workflow, and the GRPO policy answering directly.
pub struct DemoEvals<'a> {
    pub sft_on_demand: &'a EvalSummary,
    pub rl_on_demand: &'a EvalSummary,
    pub rl_direct: &'a EvalSummary,
}

/// How much each kind of gap must exceed (the README's seed-to-seed
/// noise of that gap); all 0 for plain comparisons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Margins {
    /// Mean reward, GRPO minus SFT.
    pub reward: f64,
    /// Exact-match accuracy (a fraction), on-demand minus direct.
    pub accuracy: f64,
    /// Search ratio, search-required minus search-free.
    pub search_ratio: f64,
}

/// The directions issue 6 names, each gap against its margin.
pub fn checks(e: &DemoEvals, m: &Margins) -> Vec<Check> {
    let rl = e.rl_on_demand;
    vec![
        Check::new(
            "mean reward after GRPO > after SFT (on-demand, held-out)",
            rl.overall.mean_reward,
            e.sft_on_demand.overall.mean_reward,
            m.reward,
            false,
        ),
        Check::new(
            "on-demand EM >= direct EM (GRPO policy)",
            rl.overall.accuracy_em,
            e.rl_direct.overall.accuracy_em,
            0.0,
            true,
        ),
        Check::new(
            "on-demand EM > direct EM on search-required questions",
            rl.search_required.accuracy_em,
            e.rl_direct.search_required.accuracy_em,
            m.accuracy,
            false,
        ),
        Check::new(
            "search ratio: search-required > search-free (on-demand)",
            rl.search_required.search_ratio,
            rl.search_free.search_ratio,
            m.search_ratio,
            false,
        ),
    ]
}

/// The checks as console lines.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let op = if c.at_least { ">=" } else { ">" };
        let margin = if c.margin > 0.0 {
            format!(" + {:.3}", c.margin)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "[{}] {}: {:.3} {op} {:.3}{margin}\n",
            if c.passed { "PASS" } else { "FAIL" },
            c.claim,
            c.left,
            c.right
        ));
    }
    out
}

/// One direction over several seeds' runs: its gap on each, and whether
/// their mean clears the noise of a mean over that many seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeedCheck {
    pub claim: String,
    /// `left − right` on each run, in the order given.
    pub gaps: Vec<f64>,
    pub mean: f64,
    /// The sample standard deviation of the gaps: the seed-to-seed noise.
    pub noise: f64,
    /// What the mean must exceed: the one-sided 95 % Student t quantile
    /// times the standard error, `t · noise / √n`.
    pub margin: f64,
    pub at_least: bool,
    /// Runs on which the direction held by itself (no margin).
    pub held: usize,
    pub passed: bool,
}

/// Each direction over `runs` (one [`checks`] list per seed, margins
/// ignored): its mean gap must exceed its own seed-to-seed noise's
/// one-sided 95 % bound, so one lucky or unlucky seed decides nothing.
pub fn across_seeds(runs: &[Vec<Check>]) -> Result<Vec<SeedCheck>> {
    ensure!(
        runs.len() >= 2,
        "the seed-to-seed noise needs at least 2 runs, got {}",
        runs.len()
    );
    let first = &runs[0];
    let claims = |r: &[Check]| r.iter().map(|c| c.claim.clone()).collect::<Vec<_>>();
    let want = claims(first);
    for (i, run) in runs.iter().enumerate().skip(1) {
        let got = claims(run);
        ensure!(
            got == want,
            "run {i} checks other directions than run 0: {got:?} against {want:?}"
        );
    }
    let n = runs.len() as f64;
    let t = t95_one_sided(runs.len() - 1);
    Ok(first
        .iter()
        .enumerate()
        .map(|(d, c)| {
            let gaps: Vec<f64> = runs.iter().map(|r| r[d].left - r[d].right).collect();
            let mean = gaps.iter().sum::<f64>() / n;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let noise = var.sqrt();
            let margin = t * noise / n.sqrt();
            SeedCheck {
                claim: c.claim.clone(),
                held: gaps.iter().filter(|&&g| clears(g, 0.0, c.at_least)).count(),
                passed: clears(mean, margin, c.at_least),
                gaps,
                mean,
                noise,
                margin,
                at_least: c.at_least,
            }
        })
        .collect())
}

/// The one-sided 95 % quantile of Student's t with `df` degrees of freedom
/// (standard tables; the normal's 1.645 past 30). A table, not a crate:
/// the statistics crates pull in linear algebra for one number.
fn t95_one_sided(df: usize) -> f64 {
    const T: [f64; 30] = [
        6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771,
        1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706,
        1.703, 1.701, 1.699, 1.697,
    ];
    T.get(df.max(1) - 1).copied().unwrap_or(1.645)
}

/// The checks over seeds as console lines.
pub fn render_across(checks: &[SeedCheck]) -> String {
    let mut out = String::new();
    for c in checks {
        let op = if c.at_least { ">=" } else { ">" };
        let gaps: Vec<String> = c.gaps.iter().map(|g| format!("{g:.3}")).collect();
        out.push_str(&format!(
            "[{}] {}: mean gap {:.3} {op} {:.3} (noise sd {:.3} over {} seeds); gaps {}; holds on {} of {}\n",
            if c.passed { "PASS" } else { "FAIL" },
            c.claim,
            c.mean,
            c.margin,
            c.noise,
            c.gaps.len(),
            gaps.join(" / "),
            c.held,
            c.gaps.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Metrics;

    fn summary(
        reward: f64,
        em: f64,
        req_em: f64,
        free_search: f64,
        req_search: f64,
    ) -> EvalSummary {
        EvalSummary {
            overall: Metrics {
                mean_reward: reward,
                accuracy_em: em,
                ..Default::default()
            },
            search_free: Metrics {
                search_ratio: free_search,
                ..Default::default()
            },
            search_required: Metrics {
                accuracy_em: req_em,
                search_ratio: req_search,
                ..Default::default()
            },
        }
    }

    #[test]
    fn each_direction_is_measured_with_its_margin() {
        let sft = summary(0.30, 0.2, 0.1, 0.9, 0.9);
        let rl = summary(0.50, 0.4, 0.35, 0.2, 0.9);
        let direct = summary(0.30, 0.4, 0.05, 0.0, 0.0);
        let e = DemoEvals {
            sft_on_demand: &sft,
            rl_on_demand: &rl,
            rl_direct: &direct,
        };
        let m = |x| Margins {
            reward: x,
            accuracy: x,
            search_ratio: x,
        };
        let all = checks(&e, &m(0.05));
        assert!(all.iter().all(|c| c.passed), "{}", render(&all));
        // Equal accuracy passes the ">=" check; a margin larger than the gap fails.
        assert!(render(&all).contains("[PASS] on-demand EM >= direct EM"));
        let tight = checks(&e, &m(0.25));
        let failed: Vec<_> = tight
            .iter()
            .filter(|c| !c.passed)
            .map(|c| &c.claim)
            .collect();
        assert_eq!(
            failed.len(),
            1,
            "only the reward gap (0.20) is under 0.25: {failed:?}"
        );
        let worse = summary(0.10, 0.1, 0.0, 1.0, 1.0);
        let e = DemoEvals {
            sft_on_demand: &sft,
            rl_on_demand: &worse,
            rl_direct: &direct,
        };
        assert!(checks(&e, &Margins::default()).iter().all(|c| !c.passed));
        // Each margin applies to its own kind of gap only.
        let only_search = Margins {
            search_ratio: 0.8,
            ..Margins::default()
        };
        let e = DemoEvals {
            sft_on_demand: &sft,
            rl_on_demand: &rl,
            rl_direct: &direct,
        };
        let failed: Vec<_> = checks(&e, &only_search)
            .into_iter()
            .filter(|c| !c.passed)
            .map(|c| c.claim)
            .collect();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].starts_with("search ratio"), "{failed:?}");
    }

    fn run(reward_gap: f64, em_gap: f64) -> Vec<Check> {
        vec![
            Check::new("reward", 0.4 + reward_gap, 0.4, 0.5, false),
            Check::new("em", 0.3 + em_gap, 0.3, 0.0, true),
        ]
    }

    #[test]
    fn over_seeds_the_mean_gap_must_clear_its_own_noise() {
        // The README's first machine, seeds 0–3: mean 0.254, sd 0.123.
        let runs: Vec<_> = [0.128, 0.418, 0.268, 0.202]
            .iter()
            .map(|&g| run(g, 0.0))
            .collect();
        let all = across_seeds(&runs).unwrap();
        let r = &all[0];
        assert!((r.mean - 0.254).abs() < 1e-9, "{r:?}");
        assert!((r.noise - 0.12339).abs() < 1e-4, "{r:?}");
        // t(0.95, 3 df) · sd / √4, and the run's own margin (0.5) is ignored.
        assert!((r.margin - 2.353 * r.noise / 2.0).abs() < 1e-12);
        assert!(r.passed && r.held == 4);
        // Equal accuracy everywhere: no noise, and ">=" holds.
        assert!(all[1].passed && all[1].noise == 0.0 && all[1].held == 4);
        assert!(render_across(&all).contains("[PASS] reward: mean gap 0.254 > 0.145"));

        // Half the seeds gain and half do not: a mean of 0.15 inside its noise.
        let runs: Vec<_> = [0.0, 0.3, 0.0, 0.3]
            .iter()
            .map(|&g| run(g, -0.01))
            .collect();
        let all = across_seeds(&runs).unwrap();
        assert!(!all[0].passed && all[0].held == 2, "{:?}", all[0]);
        assert!(!all[1].passed && all[1].held == 0);
        // More seeds of the same spread narrow the bound until it passes.
        let runs: Vec<_> = [0.0, 0.3].repeat(6).iter().map(|&g| run(g, 0.0)).collect();
        assert!(across_seeds(&runs).unwrap()[0].passed);
        // A gap that is not a consistent direction never passes, however many seeds.
        let runs: Vec<_> = [-0.3, 0.3]
            .repeat(20)
            .iter()
            .map(|&g| run(g, 0.0))
            .collect();
        assert!(!across_seeds(&runs).unwrap()[0].passed);
    }

    #[test]
    fn over_seeds_refuses_one_run_or_runs_of_other_directions() {
        let err = across_seeds(&[run(0.1, 0.1)]).unwrap_err().to_string();
        assert!(err.contains("at least 2 runs"), "{err}");
        let mut other = run(0.1, 0.1);
        other[1].claim = "something else".into();
        let err = across_seeds(&[run(0.1, 0.1), other])
            .unwrap_err()
            .to_string();
        assert!(err.contains("run 1 checks other directions"), "{err}");
        assert_eq!(t95_one_sided(4), 2.132);
        assert_eq!(t95_one_sided(200), 1.645);
    }
}
