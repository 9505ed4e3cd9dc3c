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
