//! Stopping a run early without losing it: whoever owns the process (the
//! host's signal handler) requests a stop; the GRPO trainer and the SFT fit
//! check it between steps, an eval between chunks of questions; each keeps
//! what it reached and returns [`Stopped`], which `--resume` continues.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A stop asked for from outside the run; clones share it.
#[derive(Clone, Debug, Default)]
pub struct StopRequest(Arc<AtomicBool>);

impl StopRequest {
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a run starts and when it may end early, beside its config.
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    /// Continue the run dir's latest checkpoint.
    pub resume: bool,
    /// Checked between steps.
    pub stop: StopRequest,
}

impl RunControl {
    pub fn new(resume: bool) -> Self {
        Self {
            resume,
            ..Self::default()
        }
    }

    pub fn with_stop(mut self, stop: StopRequest) -> Self {
        self.stop = stop;
        self
    }
}

/// Where a run was when it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopPoint {
    /// After `step` of `total` optimizer steps.
    Step { step: usize, total: usize },
    /// Building SFT's train set, `done` of `total` questions through.
    Building { done: usize, total: usize },
    /// An eval, `done` of `total` questions rolled out and kept.
    Questions { done: usize, total: usize },
}

/// The error a run returns when it stopped on request: where it stopped
/// and the checkpoint that holds it.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Stopped {
    /// "GRPO", "SFT" or "eval".
    pub what: &'static str,
    pub at: StopPoint,
    pub checkpoint: Option<PathBuf>,
}

impl Stopped {
    fn describe(&self) -> String {
        let at = match self.at {
            StopPoint::Step { step, total } => format!(
                "{} stopped on request after step {step} of {total}",
                self.what
            ),
            StopPoint::Building { done, total } => format!(
                "{} stopped on request while building its train set ({done} of {total} questions; their searches are in the tool cache, if [search.cache] keeps one)",
                self.what
            ),
            StopPoint::Questions { done, total } => format!(
                "{} stopped on request after {done} of {total} questions",
                self.what
            ),
        };
        match &self.checkpoint {
            Some(dir) => format!(
                "{at}; checkpoint {}: run the same command with --resume to continue",
                dir.display()
            ),
            None => format!(
                "{at}; nothing checkpointed yet: run the same command with --resume to start its steps again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reaches_every_clone() {
        let stop = StopRequest::default();
        let seen_by_run = RunControl::new(true).with_stop(stop.clone());
        assert!(!seen_by_run.stop.is_requested());
        stop.request();
        assert!(seen_by_run.stop.is_requested());
    }

    #[test]
    fn the_message_says_how_to_continue() {
        let s = Stopped {
            what: "GRPO",
            at: StopPoint::Step { step: 3, total: 6 },
            checkpoint: Some(PathBuf::from("run/checkpoints/step-00000003")),
        };
        let msg = s.to_string();
        assert!(msg.contains("after step 3 of 6"), "{msg}");
        assert!(
            msg.contains("step-00000003") && msg.contains("--resume"),
            "{msg}"
        );
        let none = Stopped {
            what: "SFT",
            at: StopPoint::Building {
                done: 64,
                total: 500,
            },
            checkpoint: None,
        };
        let msg = none.to_string();
        assert!(msg.contains("(64 of 500 questions"), "{msg}");
        assert!(msg.contains("nothing checkpointed yet"), "{msg}");
    }
}
