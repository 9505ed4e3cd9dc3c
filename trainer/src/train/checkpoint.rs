//! Checkpoints: `RUN_DIR/checkpoints/step-NNNNNNNN/` with the trainable
//! weights by name, the optimizer moments, the resolved config and a
//! `state.json` (step, data cursor, optimizer step count, RNG scheme, and a
//! SHA-256 of every file). Written to a temp dir, fsynced, then renamed, so
//! a checkpoint is either whole or absent; a corrupt file or a different
//! config is refused by name.

use super::config::TrainConfig;
use crate::data::DataCursor;
use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

pub const STATE_FILE: &str = "state.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const CONFIG_FILE: &str = "config.toml";
/// Beside the checkpoints: which one holds the best validated policy
/// (`val.keep_best`).
pub const BEST_FILE: &str = "best.json";
const FORMAT: u32 = 1;
const PREFIX: &str = "step-";

/// Every random draw of step k (sampling, dropout) is seeded from
/// `mix(seed, k)` at the start of the step, so this is the whole RNG state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: u64,
    pub next_step: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format: u32,
    /// Steps completed.
    pub step: usize,
    pub cursor: DataCursor,
    pub optimizer_steps: i64,
    pub rng: RngState,
    /// The training data's row count and content hash.
    pub data: String,
    /// SHA-256 of each other file, checked on load.
    pub files: BTreeMap<String, String>,
}

impl CheckpointState {
    pub fn new(
        step: usize,
        cursor: DataCursor,
        optimizer_steps: i64,
        seed: u64,
        data: String,
    ) -> Self {
        Self {
            format: FORMAT,
            step,
            cursor,
            optimizer_steps,
            rng: RngState {
                seed,
                next_step: step + 1,
            },
            data,
            files: BTreeMap::new(),
        }
    }
}

pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: CheckpointState,
    pub config: TrainConfig,
    pub weights: Vec<(String, Tensor)>,
    pub optimizer: Vec<(String, Tensor)>,
}

pub fn dir_name(step: usize) -> String {
    format!("{PREFIX}{step:08}")
}

/// The step of a per-step name ([`dir_name`], with or without an
/// extension: rollout logs, validation reports).
pub fn step_of(name: &str) -> Option<usize> {
    name.strip_prefix(PREFIX)?.split('.').next()?.parse().ok()
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn fsync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("fsync {}", path.display()))
}

fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().to_device(Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, path).with_context(|| format!("writing {}", path.display()))
}

/// Writes checkpoint `state.step` under `root` atomically; returns its dir.
pub fn save(
    root: &Path,
    config: &TrainConfig,
    mut state: CheckpointState,
    weights: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
) -> Result<PathBuf> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let name = dir_name(state.step);
    let tmp = root.join(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    // A save that fails (a full disk) takes its half-written files with it.
    if let Err(err) = write_whole(&tmp, config, &mut state, weights, optimizer) {
        if let Err(e) = std::fs::remove_dir_all(&tmp) {
            tracing::warn!(dir = %tmp.display(), error = %e, "could not remove a failed checkpoint");
        }
        return Err(err);
    }
    let dir = root.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    fsync(root)?;
    Ok(dir)
}

/// The files of one checkpoint into `tmp`, each synced.
fn write_whole(
    tmp: &Path,
    config: &TrainConfig,
    state: &mut CheckpointState,
    weights: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
) -> Result<()> {
    write_tensors(&tmp.join(WEIGHTS_FILE), weights)?;
    write_tensors(&tmp.join(OPTIMIZER_FILE), optimizer)?;
    std::fs::write(tmp.join(CONFIG_FILE), config.to_toml()?)
        .with_context(|| format!("writing {}", tmp.join(CONFIG_FILE).display()))?;
    for f in [WEIGHTS_FILE, OPTIMIZER_FILE, CONFIG_FILE] {
        let path = tmp.join(f);
        fsync(&path)?;
        state.files.insert(f.to_string(), sha256_file(&path)?);
    }
    let state_path = tmp.join(STATE_FILE);
    std::fs::write(&state_path, serde_json::to_string_pretty(&state)? + "\n")
        .with_context(|| format!("writing {}", state_path.display()))?;
    fsync(&state_path)?;
    fsync(tmp)?;
    Ok(())
}

/// Finished checkpoints under `root`, oldest first.
pub fn list(root: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", root.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|s| s.parse().ok())
        {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

pub fn latest(root: &Path) -> Result<Option<PathBuf>> {
    Ok(list(root)?.pop().map(|(_, p)| p))
}

/// [`save`], then [`prune`] to the newest `keep` and `protect`: what a run
/// does every `run.save_every` steps.
pub fn save_and_prune(
    root: &Path,
    config: &TrainConfig,
    state: CheckpointState,
    weights: &[(String, Tensor)],
    optimizer: &[(String, Tensor)],
    keep: usize,
    protect: Option<usize>,
) -> Result<PathBuf> {
    let dir = save(root, config, state, weights, optimizer)?;
    prune(root, keep, protect)?;
    tracing::info!(checkpoint = %dir.display(), "saved");
    Ok(dir)
}

/// Deletes all but the newest `keep` checkpoints (0 keeps all) and the one
/// of step `protect` (the best validated), and what a killed save left
/// half-written.
pub fn prune(root: &Path, keep: usize, protect: Option<usize>) -> Result<()> {
    for entry in std::fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".tmp-"))
        {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing the unfinished {}", path.display()))?;
        }
    }
    if keep == 0 {
        return Ok(());
    }
    let all = list(root)?;
    for (step, dir) in all.iter().take(all.len().saturating_sub(keep)) {
        if Some(*step) == protect {
            continue;
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing old checkpoint {}", dir.display()))?;
    }
    Ok(())
}

/// `checkpoints/best.json`: the best validation so far that has a
/// checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub step: usize,
    /// The checkpoint's dir name (`step-NNNNNNNN`).
    pub checkpoint: String,
    /// Held-out reward, the measure it is best by, and EM beside it.
    pub reward: f64,
    pub accuracy: f64,
}

pub fn write_best(root: &Path, best: &Best) -> Result<()> {
    let path = root.join(BEST_FILE);
    let tmp = root.join(format!(".{BEST_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_string_pretty(best)? + "\n")
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("writing {}", path.display()))
}

/// The best checkpoint's dir, from `best.json`; `None` when the run keeps
/// none.
pub fn best(root: &Path) -> Result<Option<(Best, PathBuf)>> {
    let path = root.join(BEST_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let best: Best =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let dir = root.join(dir_name(best.step));
    ensure!(
        dir.join(STATE_FILE).is_file(),
        "{} names {}, which is not a checkpoint",
        path.display(),
        dir.display()
    );
    Ok(Some((best, dir)))
}

/// Reads a checkpoint dir, checking every file against its recorded hash.
pub fn load(dir: &Path) -> Result<Checkpoint> {
    let what = || format!("checkpoint {}", dir.display());
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("{}: cannot read {STATE_FILE}", what()))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .with_context(|| format!("{}: {STATE_FILE} is corrupt", what()))?;
    ensure!(
        state.format == FORMAT,
        "{}: format {} (this build reads format {FORMAT})",
        what(),
        state.format
    );
    for f in [WEIGHTS_FILE, OPTIMIZER_FILE, CONFIG_FILE] {
        let want = state
            .files
            .get(f)
            .with_context(|| format!("{}: {STATE_FILE} lists no hash for {f}", what()))?;
        let got = sha256_file(&dir.join(f)).with_context(what)?;
        if &got != want {
            bail!(
                "{}: {f} is corrupt (SHA-256 {got}, recorded {want}); delete this checkpoint to resume from an older one",
                what()
            );
        }
    }
    let config_text = std::fs::read_to_string(dir.join(CONFIG_FILE)).with_context(what)?;
    let config = TrainConfig::from_table(toml::from_str(&config_text).with_context(what)?)
        .with_context(|| format!("{}: {CONFIG_FILE}", what()))?;
    let read =
        |f: &str| Tensor::read_safetensors(dir.join(f)).with_context(|| format!("{}: {f}", what()));
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        state,
        config,
        weights: read(WEIGHTS_FILE)?,
        optimizer: read(OPTIMIZER_FILE)?,
    })
}

/// Keys that may change between a run and its resume: where and how often
/// it writes, not what it computes.
const OPERATIONAL_KEYS: [&str; 9] = [
    "run.dir",
    "run.save_every",
    "run.keep_checkpoints",
    "run.rollouts_every",
    "run.tensorboard",
    "run.progress",
    "model.device",
    "search.cache",
    // Validation reads the policy and changes nothing it learns.
    "val",
];

fn flatten(prefix: &str, v: &toml::Value, free: &[&str], out: &mut BTreeMap<String, String>) {
    if OPERATIONAL_KEYS.contains(&prefix) || free.contains(&prefix) {
        return;
    }
    match v {
        toml::Value::Table(t) => {
            for (k, inner) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, inner, free, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// Refuses to resume under a config that computes something else, naming
/// every key that differs.
pub fn check_compatible(saved: &TrainConfig, now: &TrainConfig) -> Result<()> {
    check_compatible_values(
        &toml::Value::try_from(saved)?,
        &toml::Value::try_from(now)?,
        &[],
    )
}

/// [`check_compatible`] for any config as TOML (e.g. with more sections),
/// where the keys in `free` may differ too.
pub fn check_compatible_values(
    saved: &toml::Value,
    now: &toml::Value,
    free: &[&str],
) -> Result<()> {
    let table = |v: &toml::Value| {
        let mut out = BTreeMap::new();
        flatten("", v, free, &mut out);
        out
    };
    let (a, b) = (table(saved), table(now));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let none = "(unset)".to_string();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "{k} = {} there, {} now",
                a.get(k).unwrap_or(&none),
                b.get(k).unwrap_or(&none)
            )
        })
        .collect();
    if diffs.is_empty() {
        Ok(())
    } else {
        bail!(
            "the checkpoint was written under a different config: {}",
            diffs.join("; ")
        )
    }
}

/// Copies saved tensors into `params` by name; every parameter must be
/// there with its shape.
pub fn restore(saved: &[(String, Tensor)], params: &[(String, Tensor)], what: &str) -> Result<()> {
    let by_name: BTreeMap<&str, &Tensor> = saved.iter().map(|(n, t)| (n.as_str(), t)).collect();
    tch::no_grad(|| {
        for (name, p) in params {
            let src = by_name
                .get(name.as_str())
                .with_context(|| format!("{what} has no tensor `{name}`"))?;
            ensure!(
                src.size() == p.size(),
                "{what}: `{name}` has shape {:?}, the model's is {:?}",
                src.size(),
                p.size()
            );
            let mut p = p.shallow_clone();
            p.copy_(src);
        }
        if saved.len() != params.len() {
            let known: std::collections::BTreeSet<&str> =
                params.iter().map(|(n, _)| n.as_str()).collect();
            let extra: Vec<&str> = by_name
                .keys()
                .filter(|n| !known.contains(*n))
                .copied()
                .collect();
            bail!(
                "{what} has tensors the model does not train: {}",
                extra.join(", ")
            );
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TrainConfig {
        let mut t = toml::Table::new();
        for o in ["model.kind=bigram", "rollout.n=2"] {
            super::super::config::apply_override(&mut t, o).unwrap();
        }
        TrainConfig::from_table(t).unwrap()
    }

    fn save_step(root: &Path, step: usize) -> PathBuf {
        let w = vec![(
            "w".to_string(),
            Tensor::from_slice(&[1.0f32, 2.0, step as f32]),
        )];
        let m = vec![("m.w".to_string(), Tensor::from_slice(&[0.5f32; 3]))];
        let state =
            CheckpointState::new(step, DataCursor::new(3, true), step as i64, 3, "d".into());
        save(root, &cfg(), state, &w, &m).unwrap()
    }

    #[test]
    fn pruning_keeps_the_protected_checkpoint_beside_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("checkpoints");
        for s in [2, 4, 6, 8] {
            save_step(&root, s);
        }
        let steps = || list(&root).unwrap().iter().map(|c| c.0).collect::<Vec<_>>();
        prune(&root, 2, Some(2)).unwrap();
        assert_eq!(steps(), [2, 6, 8]);
        // Protecting one of the newest keeps no more than `keep`.
        prune(&root, 2, Some(8)).unwrap();
        assert_eq!(steps(), [6, 8]);
        prune(&root, 0, Some(8)).unwrap();
        assert_eq!(steps(), [6, 8]);
        // best.json names a checkpoint; one it names that is gone is an error.
        let best = Best {
            step: 6,
            checkpoint: dir_name(6),
            reward: 0.5,
            accuracy: 0.25,
        };
        assert!(super::best(&root).unwrap().is_none());
        write_best(&root, &best).unwrap();
        let (read, path) = super::best(&root).unwrap().unwrap();
        assert_eq!((read, path), (best.clone(), root.join(dir_name(6))));
        write_best(&root, &Best { step: 4, ..best }).unwrap();
        let err = super::best(&root).unwrap_err().to_string();
        assert!(
            err.contains("best.json names") && err.contains("step-00000004"),
            "{err}"
        );
    }

    #[test]
    fn saves_whole_lists_prunes_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("checkpoints");
        for s in [2, 4, 6] {
            save_step(&root, s);
        }
        // A half-written temp dir from a killed save is not a checkpoint.
        std::fs::create_dir_all(root.join(".tmp-step-00000008")).unwrap();
        assert_eq!(
            list(&root).unwrap().iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![2, 4, 6]
        );
        prune(&root, 2, None).unwrap();
        assert_eq!(
            list(&root).unwrap().iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![4, 6]
        );
        // Pruning also takes the killed save's leftovers.
        assert!(!root.join(".tmp-step-00000008").exists());
        // A save that fails half-way leaves nothing behind.
        let w = vec![("w".to_string(), Tensor::from_slice(&[1.0f32, 2.0]))];
        let unwritable = vec![(
            "m.w".to_string(),
            Tensor::from_slice(&[1.0f32, 2.0])
                .view([1, 2])
                .view_as_complex(),
        )];
        let state = CheckpointState::new(8, DataCursor::new(3, true), 8, 3, "d".into());
        let err = save(&root, &cfg(), state, &w, &unwritable).unwrap_err();
        assert!(format!("{err:#}").contains("optimizer"), "{err:#}");
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [dir_name(4), dir_name(6)]);
        let ck = load(&latest(&root).unwrap().unwrap()).unwrap();
        assert_eq!(
            (
                ck.state.step,
                ck.state.rng.next_step,
                ck.state.optimizer_steps
            ),
            (6, 7, 6)
        );
        assert_eq!(ck.config, cfg());
        let p = vec![(
            "w".to_string(),
            Tensor::zeros([3], (tch::Kind::Float, Device::Cpu)),
        )];
        restore(&ck.weights, &p, "weights").unwrap();
        assert_eq!(Vec::<f32>::try_from(&p[0].1).unwrap(), vec![1.0, 2.0, 6.0]);
        let wrong = vec![(
            "v".to_string(),
            Tensor::zeros([3], (tch::Kind::Float, Device::Cpu)),
        )];
        let err = restore(&ck.weights, &wrong, "weights")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no tensor `v`"), "{err}");
        let shape = vec![(
            "w".to_string(),
            Tensor::zeros([4], (tch::Kind::Float, Device::Cpu)),
        )];
        assert!(
            restore(&ck.weights, &shape, "weights")
                .unwrap_err()
                .to_string()
                .contains("shape")
        );
    }

    #[test]
    fn corruption_and_other_configs_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let ck = save_step(dir.path(), 2);
        let w = ck.join(WEIGHTS_FILE);
        let mut bytes = std::fs::read(&w).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        std::fs::write(&w, bytes).unwrap();
        let err = format!("{:#}", load(&ck).err().unwrap());
        assert!(err.contains("weights.safetensors is corrupt"), "{err}");
        std::fs::write(ck.join(STATE_FILE), "{").unwrap();
        let err = format!("{:#}", load(&ck).err().unwrap());
        assert!(err.contains("state.json is corrupt"), "{err}");

        let mut other = cfg();
        other.rollout.n = 8;
        other.actor.lr = 1e-5;
        other.run.save_every = 1;
        other.run.dir = "elsewhere".into();
        let err = check_compatible(&cfg(), &other).unwrap_err().to_string();
        assert!(
            err.contains("rollout.n = 2 there, 8 now") && err.contains("actor.lr"),
            "{err}"
        );
        assert!(
            !err.contains("save_every") && !err.contains("run.dir"),
            "{err}"
        );
        let mut same = cfg();
        same.run.keep_checkpoints = 9;
        check_compatible(&cfg(), &same).unwrap();
    }
}
