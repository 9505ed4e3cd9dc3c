//! A checkpoint → a transformers-loadable model dir (the seed's
//! `model_merger.py`): the policy the checkpoint's config names is built,
//! its trainable weights restored, and `TrainablePolicy::export` writes the
//! dir (merging LoRA adapters is the model's job).

use super::checkpoint::{self, Checkpoint, STATE_FILE};
use super::policy_factory::{PolicyInit, PolicyVisitor, with_policy};
use super::trainer::CHECKPOINTS_DIR;
use crate::policy::TrainablePolicy;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// A checkpoint dir as given, or the latest checkpoint of a run dir.
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf> {
    if path.join(STATE_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    match checkpoint::latest(&path.join(CHECKPOINTS_DIR))? {
        Some(dir) => Ok(dir),
        None => bail!(
            "{} is neither a checkpoint (no {STATE_FILE}) nor a run dir with checkpoints",
            path.display()
        ),
    }
}

struct Export<'a> {
    ck: &'a Checkpoint,
    out: &'a Path,
}

impl PolicyVisitor for Export<'_> {
    type Output = ();
    fn visit<P: TrainablePolicy>(self, policy: P) -> Result<()> {
        let what = format!("checkpoint {}", self.ck.dir.display());
        checkpoint::restore(&self.ck.weights, &policy.trainable_parameters(), &what)?;
        policy
            .export(self.out)
            .with_context(|| format!("exporting to {}", self.out.display()))
    }
}

/// Exports `checkpoint` (a checkpoint or run dir) to `out`; returns the
/// checkpoint dir used.
pub fn export_checkpoint(checkpoint: &Path, out: &Path) -> Result<PathBuf> {
    let dir = resolve_checkpoint(checkpoint)?;
    let ck = checkpoint::load(&dir)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    with_policy(
        &ck.config.model,
        PolicyInit::Load,
        ck.config.run.seed,
        Export { ck: &ck, out },
    )?;
    Ok(dir)
}
