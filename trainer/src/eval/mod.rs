//! Evaluation of a workflow (direct, RAG, on-demand) on a dataset: the
//! workflows drive a policy with search tools (`workflow`), per-question
//! results go in, metrics and tables come out, optionally judged by an LLM.
//! The metrics are pure functions of the results.

pub mod command;
pub mod config;
pub mod held_out;
pub mod judge;
pub mod metrics;
pub mod partial;
pub mod table;
pub mod workflow;

pub use command::{EvalOutput, label_for, run_eval};
pub use config::EvalSection;
pub use held_out::HeldOut;
pub use metrics::{Category, EvalSummary, Metrics, QuestionResult, metrics, summarize};
pub use workflow::{Outcome, Workflow, WorkflowRunner, question_result};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of an eval report inside a run dir's `eval/` folder.
pub fn report_file_name(label: &str) -> String {
    format!("{label}.json")
}

/// What `mmsr-host eval` writes: the metrics and every question's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Name shown in tables, e.g. "rl (on-demand)".
    pub label: String,
    /// direct, rag or on-demand.
    pub workflow: String,
    pub model: String,
    pub dataset: String,
    pub summary: EvalSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<judge::JudgeStats>,
    pub results: Vec<QuestionResult>,
}

impl EvalReport {
    pub fn new(
        label: &str,
        workflow: &str,
        model: &str,
        dataset: &str,
        results: Vec<QuestionResult>,
    ) -> Self {
        Self {
            label: label.into(),
            workflow: workflow.into(),
            model: model.into(),
            dataset: dataset.into(),
            summary: summarize(&results),
            judge: None,
            results,
        }
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        // Renamed into place, so an interrupted save keeps the last report.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)? + "\n")
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("writing eval report {}", path.display()))
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading eval report {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("parsing eval report {}", path.display()))
    }
}

#[cfg(test)]
mod tests;
