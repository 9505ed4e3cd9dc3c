//! One line of `RUN_DIR/metrics.jsonl` per step. Names follow the report's
//! plot aliases (`reward`, `accuracy`, `format`, `search/image_ratio`, …);
//! nested objects flatten to `a/b`.

use super::update::UpdateStats;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based: the metrics after `step` steps.
    pub step: usize,
    /// The data epoch the step's prompts came from.
    pub epoch: u64,
    pub reward: f64,
    pub accuracy: f64,
    pub format: f64,
    pub search: SearchMetrics,
    /// The same per `data_source`, so a run shows whether it learns *when*
    /// to search (e.g. search-free vs search-required rows).
    pub by_source: BTreeMap<String, SourceMetrics>,
    /// Mean generated tokens per trajectory (all turns).
    pub response_length: f64,
    pub turns: f64,
    pub tool_errors: usize,
    pub trajectories: usize,
    /// Trajectories the update saw (after equal-group filtering).
    pub trained_trajectories: usize,
    pub filtered_groups: usize,
    /// KL, entropy, policy loss, clip fraction, gradient norm, optimizer steps.
    #[serde(flatten)]
    pub update: UpdateStats,
    pub lr: f64,
    pub time: TimeMetrics,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchMetrics {
    /// Share of trajectories that used any search.
    pub ratio: f64,
    pub image_ratio: f64,
    pub text_ratio: f64,
    /// Searches per trajectory.
    pub per_trajectory: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceMetrics {
    pub trajectories: usize,
    pub reward: f64,
    pub accuracy: f64,
    /// Share of the source's trajectories that used any search.
    pub search_ratio: f64,
}

/// Wall seconds, from the model thread's view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeMetrics {
    /// Generating assistant turns.
    pub generation: f64,
    /// Blocked on tools with nothing to generate.
    pub tools: f64,
    /// The whole rollout batch.
    pub rollout: f64,
    /// Old/reference scoring and the PPO epochs.
    pub update: f64,
    pub step: f64,
}

/// Appends metric lines; each line is written whole and flushed, so a
/// killed run leaves at most one torn last line.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// A fresh log (an old one is replaced).
    pub fn create(path: &Path) -> Result<Self> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Continues a log after a resume from step `step`: lines of later steps
    /// (run after the checkpoint, before the stop) and a torn last line are
    /// dropped, so the log reads as one uninterrupted run.
    pub fn resume(path: &Path, step: usize) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Self::rewrite(
            path,
            text.lines().filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("step")?.as_u64())
                    .is_some_and(|s| s as usize <= step)
            }),
        )
    }

    /// A log holding exactly `lines`, written beside `path` and renamed
    /// over it (a kill meanwhile leaves the old one), then appended to.
    pub fn rewrite<'a>(path: &Path, lines: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let kept: String = lines.into_iter().map(|l| format!("{l}\n")).collect();
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, kept).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn append<T: Serialize>(&mut self, m: &T) -> Result<()> {
        let line = serde_json::to_string(m)? + "\n";
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::metrics_log;

    #[test]
    fn lines_plot_under_the_reports_names_and_resume_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::create(&path).unwrap();
        for step in 1..=4 {
            let m = StepMetrics {
                step,
                reward: step as f64 / 10.0,
                search: SearchMetrics {
                    image_ratio: 0.5,
                    ..Default::default()
                },
                ..Default::default()
            };
            log.append(&m).unwrap();
        }
        drop(log);
        // A torn line from a killed run.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"step\": 5, \"rew")
            .unwrap();
        let mut log = MetricsLog::resume(&path, 2).unwrap();
        log.append(&StepMetrics {
            step: 3,
            reward: 0.9,
            ..Default::default()
        })
        .unwrap();
        let recs = metrics_log::read(&path).unwrap();
        let steps: Vec<f64> = recs.iter().map(|r| r.step).collect();
        assert_eq!(steps, vec![1.0, 2.0, 3.0]);
        let (_, reward) = metrics_log::series(&recs, &["reward"]).unwrap();
        assert_eq!(reward[2], (3.0, 0.9));
        assert_eq!(recs[0].values["search/image_ratio"], 0.5);
        assert!(recs[0].values.contains_key("time/generation"));
    }
}
