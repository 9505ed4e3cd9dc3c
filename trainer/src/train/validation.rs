//! Held-out validation between GRPO steps. The trainer schedules it (`[val]`)
//! and logs it; what it runs is behind [`Validator`], which `eval`
//! implements with its on-demand workflow, so the step loop knows nothing of
//! workflows.

use super::metrics::{SearchMetrics, SourceMetrics};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The log, and where a validator keeps each validation's answers
/// (`val.save_results`).
pub use crate::report::{VAL_METRICS_FILE, VAL_RESULTS_DIR};

/// `RUN_DIR/val/step-NNNNNNNN.json`.
pub fn val_results_file(run_dir: &Path, step: usize) -> PathBuf {
    run_dir
        .join(VAL_RESULTS_DIR)
        .join(super::checkpoint::dir_name(step) + ".json")
}

/// Scores a policy on a held-out set without changing it.
pub trait Validator<P> {
    /// `step`: the policy has trained that many steps (0: the start).
    fn validate(&mut self, policy: &mut P, step: usize) -> Result<ValMetrics>;
}

/// One line of `RUN_DIR/val_metrics.jsonl`, under the names the training
/// metrics use, so the report plots both alike.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ValMetrics {
    /// The policy after `step` steps (0: the starting policy).
    pub step: usize,
    pub questions: usize,
    pub reward: f64,
    /// Exact match, as eval reports it.
    pub accuracy: f64,
    pub accuracy_subem: f64,
    pub format: f64,
    pub search: SearchMetrics,
    /// Per `data_source`; `trajectories` counts its questions.
    pub by_source: BTreeMap<String, SourceMetrics>,
    pub secs: f64,
}
