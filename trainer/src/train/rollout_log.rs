//! `RUN_DIR/rollouts/step-NNNNNNNN.jsonl` (`run.rollouts_every`): every
//! trajectory of a step as the policy wrote it, what its searches showed it,
//! and how it was scored, to read what a run is learning (veRL's
//! `rollout_data_dir`). Metrics say *that* the search ratio moved; these say
//! which queries it sends and whether it read the results.

use super::batch::ScoredBatch;
use super::checkpoint;
use crate::data::Sample;
use crate::rollout::{EndReason, Trajectory};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const ROLLOUTS_DIR: &str = "rollouts";

/// One line: one trajectory.
#[derive(Clone, Debug, Serialize)]
pub struct RolloutRecord<'a> {
    pub step: usize,
    /// The prompt's group in the step, and this rollout's place in it.
    pub group: usize,
    pub rollout: usize,
    /// The dataset row (`train.parquet#12`).
    pub sample: &'a str,
    pub data_source: &'a str,
    pub question: &'a str,
    /// Ground truth first, then candidate answers.
    pub golds: Vec<String>,
    /// The assistant turns.
    pub turns: Vec<&'a str>,
    /// What each search showed the model, images as `<image>`.
    pub observations: &'a [String],
    pub end: EndReason,
    pub image_searches: usize,
    pub text_searches: usize,
    pub tool_errors: usize,
    pub response_tokens: usize,
    pub answer: Option<&'a str>,
    pub reward: f64,
    pub accuracy: f64,
    pub format: f64,
    pub advantage: f64,
    /// False when its group was filtered out of the update.
    pub trained: bool,
}

impl<'a> RolloutRecord<'a> {
    /// The fields a trajectory itself carries; the caller fills in the rest.
    pub fn of(t: &'a Trajectory) -> Self {
        Self {
            step: 0,
            group: 0,
            rollout: 0,
            sample: "",
            data_source: "",
            question: "",
            golds: Vec::new(),
            turns: t.turn_texts(),
            observations: &t.observations,
            end: t.end,
            image_searches: t.image_searches,
            text_searches: t.text_searches,
            tool_errors: t.tool_errors,
            response_tokens: t.response_tokens(),
            answer: None,
            reward: 0.0,
            accuracy: 0.0,
            format: 0.0,
            advantage: 0.0,
            trained: false,
        }
    }
}

/// A step's records: `trajectories` come in groups of consecutive rollouts,
/// one group per entry of `groups` (the prompt's sample).
pub fn step_records<'a>(
    step: usize,
    trajectories: &'a [Trajectory],
    groups: &[&'a Sample],
    scored: &'a ScoredBatch,
) -> Vec<RolloutRecord<'a>> {
    let n = trajectories.len() / groups.len().max(1);
    trajectories
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let s = groups[i / n];
            let r = &scored.rewards[i];
            RolloutRecord {
                step,
                group: i / n,
                rollout: i % n,
                sample: &s.id,
                data_source: &s.data_source,
                question: &s.question,
                golds: s.gold.all(),
                answer: r.answer.as_deref(),
                reward: r.reward,
                accuracy: r.accuracy,
                format: r.format,
                advantage: scored.advantages[i],
                trained: scored.keep[i],
                ..RolloutRecord::of(t)
            }
        })
        .collect()
}

pub fn step_file(run_dir: &Path, step: usize) -> PathBuf {
    run_dir
        .join(ROLLOUTS_DIR)
        .join(checkpoint::dir_name(step) + ".jsonl")
}

/// Writes one step's file whole (a temporary file, then a rename), so a
/// killed run leaves no half file.
pub fn write_step(run_dir: &Path, step: usize, records: &[RolloutRecord]) -> Result<PathBuf> {
    let path = step_file(run_dir, step);
    let dir = path.parent().expect("a file in the rollouts dir");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut body = String::new();
    for r in records {
        body.push_str(&serde_json::to_string(r)?);
        body.push('\n');
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// On resume, in a dir of per-step files (`step-N.*`: rollouts, validation
/// results): those of steps after the checkpoint came from the run that was
/// killed, and the resumed run writes its own.
pub fn drop_steps_after(dir: &Path, step: usize) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let later = checkpoint::step_of(name).is_some_and(|s| s > step);
        if later {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Transcript;

    fn trajectory() -> Trajectory {
        Trajectory {
            transcript: Transcript::default(),
            turns: Vec::new(),
            image_searches: 1,
            text_searches: 0,
            tool_errors: 0,
            end: EndReason::Answered,
            observations: vec!["<image> Town hall".into()],
        }
    }

    #[test]
    fn a_step_file_is_whole_and_a_resume_drops_the_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let t = trajectory();
        let rec = |step, rollout| RolloutRecord {
            step,
            rollout,
            sample: "train.jsonl#3",
            reward: 0.5,
            ..RolloutRecord::of(&t)
        };
        for step in [2, 4, 6] {
            let path = write_step(dir.path(), step, &[rec(step, 0), rec(step, 1)]).unwrap();
            assert_eq!(path, step_file(dir.path(), step));
        }
        let text = std::fs::read_to_string(step_file(dir.path(), 4)).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["rollout"], 1);
        assert_eq!(lines[1]["step"], 4);
        assert_eq!(lines[0]["end"], "answered");
        assert_eq!(lines[0]["observations"][0], "<image> Town hall");
        // A stray file that is not a step's stays.
        std::fs::write(dir.path().join(ROLLOUTS_DIR).join("notes.txt"), "x").unwrap();
        drop_steps_after(&dir.path().join(ROLLOUTS_DIR), 4).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join(ROLLOUTS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["notes.txt", "step-00000002.jsonl", "step-00000004.jsonl"]
        );
        drop_steps_after(&dir.path().join("none"), 0).unwrap();
    }
}
