//! Datasets: the seed's parquet and JSONL with an image folder, loaded into
//! [`Sample`]s with every bad row named (file and row) and either refused or
//! skipped and counted, as the config says.

mod cell;
mod cursor;
mod image_file;
mod jsonl;
mod parquet;
mod sample;

pub use cursor::DataCursor;
pub use image_file::MAX_IMAGE_BYTES;
pub use sample::{Sample, check_image, check_question, clean_question};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// By extension: `.parquet` or `.jsonl`/`.json`.
    #[default]
    Auto,
    Parquet,
    Jsonl,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadRowPolicy {
    /// Refuse the dataset, naming the first bad row.
    #[default]
    Error,
    /// Skip bad rows; they are counted and logged.
    Skip,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadOptions {
    pub format: DataFormat,
    /// Folder that image names (JSONL `image`, parquet `images.path`) are
    /// relative to, and confined to (default: the dataset file's folder).
    pub image_dir: Option<PathBuf>,
    pub on_bad_row: BadRowPolicy,
}

/// What a loader made of one row.
pub struct RowOutcome {
    pub row: usize,
    pub sample: Result<Sample, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BadRow {
    pub row: usize,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadReport {
    pub file: String,
    pub rows: usize,
    pub valid: usize,
    pub bad: Vec<BadRow>,
}

pub struct Dataset {
    pub samples: Vec<Sample>,
    pub report: LoadReport,
}

fn source_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Reads every row and reports each bad one, whatever the policy.
pub fn inspect(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let format = match opts.format {
        DataFormat::Auto => match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => DataFormat::Parquet,
            Some("jsonl" | "json" | "ndjson") => DataFormat::Jsonl,
            _ => bail!(
                "{}: cannot tell the dataset format from the extension (use .parquet or .jsonl, or set data.format)",
                path.display()
            ),
        },
        f => f,
    };
    let rows = match format {
        DataFormat::Parquet => parquet::read(path, opts.image_dir.as_deref())?,
        DataFormat::Jsonl | DataFormat::Auto => jsonl::read(path, opts.image_dir.as_deref())?,
    };
    let mut report = LoadReport {
        file: path.display().to_string(),
        rows: rows.len(),
        valid: 0,
        bad: Vec::new(),
    };
    let mut samples = Vec::with_capacity(rows.len());
    for r in rows {
        match r.sample {
            Ok(s) => samples.push(s),
            Err(reason) => report.bad.push(BadRow { row: r.row, reason }),
        }
    }
    report.valid = samples.len();
    Ok(Dataset { samples, report })
}

/// Loads a dataset for training or evaluation under the bad-row policy.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let ds = inspect(path, opts)?;
    if let Some(first) = ds.report.bad.first() {
        match opts.on_bad_row {
            BadRowPolicy::Error => bail!(
                "{} row {}: {} ({} bad row(s) in all; set data.on_bad_row = \"skip\" to skip them)",
                path.display(),
                first.row,
                first.reason,
                ds.report.bad.len()
            ),
            BadRowPolicy::Skip => {
                for b in &ds.report.bad {
                    tracing::warn!(file = %path.display(), row = b.row, reason = %b.reason, "skipping bad row");
                }
            }
        }
    }
    if ds.samples.is_empty() {
        bail!("{}: no usable rows", path.display());
    }
    Ok(ds)
}

/// `k` of `items` spread evenly over them, in their order (all when `k` is 0
/// or not below their count). A held-out split is often sorted by source or
/// difficulty, so its first `k` rows would measure one corner of it.
pub fn spread<T>(items: Vec<T>, k: usize) -> Vec<T> {
    let n = items.len();
    if k == 0 || k >= n {
        return items;
    }
    // Rows floor(i·n/k) for i < k: row j is one when [j·k/n, (j+1)·k/n)
    // holds an integer.
    items
        .into_iter()
        .enumerate()
        .filter(|(j, _)| (j * k).div_ceil(n) != ((j + 1) * k).div_ceil(n))
        .map(|(_, x)| x)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn spread_keeps_k_rows_across_the_whole_split_in_order() {
        let rows: Vec<usize> = (0..10).collect();
        assert_eq!(spread(rows.clone(), 0), rows);
        assert_eq!(spread(rows.clone(), 10), rows);
        assert_eq!(spread(rows.clone(), 99), rows);
        assert_eq!(spread(rows.clone(), 1), vec![0]);
        assert_eq!(spread(rows.clone(), 2), vec![0, 5]);
        assert_eq!(spread(rows.clone(), 3), vec![0, 3, 6]);
        assert_eq!(spread(rows.clone(), 5), vec![0, 2, 4, 6, 8]);
        // A split sorted by source: each source keeps its share.
        let sorted: Vec<&str> = std::iter::repeat_n("a", 60)
            .chain(std::iter::repeat_n("b", 30))
            .chain(std::iter::repeat_n("c", 10))
            .collect();
        for k in [1usize, 7, 10, 33, 50, 99] {
            let kept = spread(sorted.clone(), k);
            assert_eq!(kept.len(), k, "k = {k}");
            let count = |s| kept.iter().filter(|x| **x == s).count() as f64;
            let share = k as f64 / 100.0;
            for (s, n) in [("a", 60.0), ("b", 30.0), ("c", 10.0)] {
                assert!(
                    (count(s) - n * share).abs() <= 1.0,
                    "k = {k}, {s}: {}",
                    count(s)
                );
            }
        }
    }
}
