//! Room on disk for what a run will write, checked before the work: a run
//! that trains for hours and then cannot write its checkpoint or model has
//! lost it all.

use anyhow::{Result, ensure};
use std::path::Path;
use tch::Tensor;

/// The bytes `tensors` take as stored (safetensors adds a small header).
pub fn tensor_bytes(tensors: &[(String, Tensor)]) -> u64 {
    tensors
        .iter()
        .map(|(_, t)| t.numel() as u64 * t.kind().elt_size_in_bytes() as u64)
        .sum()
}

/// The bytes of AdamW's state for `params` as a checkpoint stores it: two
/// f32 moments each, and an f32 master copy of a parameter kept in
/// another dtype.
pub fn adamw_state_bytes(params: &[(String, Tensor)]) -> u64 {
    params
        .iter()
        .map(|(_, t)| {
            let copies = if t.kind() == tch::Kind::Float { 2 } else { 3 };
            t.numel() as u64 * 4 * copies
        })
        .sum()
}

/// Refuses when the file system holding `dir` (or its nearest existing
/// parent) has less than `need` bytes free for this user. Where the free
/// space cannot be read, it warns and lets the run go on.
pub fn ensure_room(dir: &Path, need: u64, what: &str) -> Result<()> {
    let probe = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("."));
    let free = match fs4::available_space(probe) {
        Ok(free) => free,
        Err(err) => {
            tracing::warn!(dir = %probe.display(), %err, "free space unknown; not checked");
            return Ok(());
        }
    };
    ensure!(
        free >= need,
        "{what} needs about {} in {}, where {} is free: free some space or choose another dir",
        human(need),
        dir.display(),
        human(free)
    );
    Ok(())
}

fn human(bytes: u64) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if gib >= 1.0 {
        format!("{gib:.1} GiB")
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// `path`'s size, 0 when it cannot be read (a file to be copied).
pub fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_the_disk_holds_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("not/yet/made");
        ensure_room(&out, 1 << 20, "the model").unwrap();
        let err = format!(
            "{:#}",
            ensure_room(&out, u64::MAX / 2, "the model").unwrap_err()
        );
        assert!(
            err.contains("the model needs about") && err.contains("not/yet/made"),
            "{err}"
        );
        let t = vec![
            (
                "a".to_string(),
                Tensor::zeros([3, 4], (tch::Kind::Float, tch::Device::Cpu)),
            ),
            (
                "b".to_string(),
                Tensor::zeros([10], (tch::Kind::BFloat16, tch::Device::Cpu)),
            ),
        ];
        assert_eq!(tensor_bytes(&t), 12 * 4 + 10 * 2);
        // What a checkpoint of AdamW's state holds, counted before it exists.
        let shared = t
            .iter()
            .map(|(n, p)| (n.clone(), p.shallow_clone()))
            .collect();
        let opt = crate::algo::AdamW::new(shared, Default::default());
        assert_eq!(adamw_state_bytes(&t), tensor_bytes(&opt.state_tensors()));
    }
}
