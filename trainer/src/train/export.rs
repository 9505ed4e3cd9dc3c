//! A checkpoint → a transformers-loadable model dir (the seed's
//! `model_merger.py`): the policy the checkpoint's config names is built,
//! its trainable weights restored, and `TrainablePolicy::export` writes the
//! dir (merging LoRA adapters is the model's job).

use super::checkpoint::{self, BEST_FILE, Checkpoint, STATE_FILE};
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

/// A run dir's best validated checkpoint (`val.keep_best`).
pub fn resolve_best(run_dir: &Path) -> Result<PathBuf> {
    match checkpoint::best(&run_dir.join(CHECKPOINTS_DIR))? {
        Some((_, dir)) => Ok(dir),
        None => bail!(
            "{} has no {CHECKPOINTS_DIR}/{BEST_FILE}: the run kept no best checkpoint (train with val.keep_best)",
            run_dir.display()
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

/// Refuses to write a model into a dir that already holds files: an export
/// overwrites `config.json` and the weights of whatever model is there.
pub fn ensure_empty_out(out: &Path) -> Result<()> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out)
            .with_context(|| format!("{} is not a readable directory", out.display()))?;
        if let Some(first) = entries.next() {
            bail!(
                "{} is not empty (it holds {:?}): a model dir is written only into a new or empty dir; choose another or remove it",
                out.display(),
                first?.file_name()
            );
        }
    }
    Ok(())
}

/// Exports `checkpoint` (a checkpoint or run dir) to `out`; returns the
/// checkpoint dir used.
pub fn export_checkpoint(checkpoint: &Path, out: &Path) -> Result<PathBuf> {
    let dir = resolve_checkpoint(checkpoint)?;
    let ck = checkpoint::load(&dir)?;
    ensure_empty_out(out)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    with_policy(
        &ck.config.model,
        PolicyInit::Load,
        ck.config.run.seed,
        Export { ck: &ck, out },
    )?;
    Ok(dir)
}
