//! `mmsr-host data check FILE [--json]`: loads a dataset with the trainer's
//! own loader and reports every bad row; exits non-zero if any row is bad or the file has none.
use anyhow::Result;
use clap::{Args, Subcommand};
use mmsr_trainer::data::{DataFormat, LoadOptions, LoadReport, inspect};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum DataCmd {
    /// Load a dataset with the trainer's loader and report bad rows.
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// A .parquet (seed layout) or .jsonl file.
    pub file: PathBuf,
    /// Folder that image file names are relative to (default: the file's folder).
    #[arg(long)]
    pub image_dir: Option<PathBuf>,
    /// Force the format instead of guessing it from the extension.
    #[arg(long, value_parser = ["parquet", "jsonl"])]
    pub format: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: DataCmd) -> Result<ExitCode> {
    let DataCmd::Check(args) = cmd;
    let format = match args.format.as_deref() {
        Some("parquet") => DataFormat::Parquet,
        Some("jsonl") => DataFormat::Jsonl,
        _ => DataFormat::Auto,
    };
    let opts = LoadOptions {
        format,
        image_dir: args.image_dir,
        ..Default::default()
    };
    let report = inspect(&args.file, &opts)?.report;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} rows, {} valid, {} bad",
            report.file,
            report.rows,
            report.valid,
            report.bad.len()
        );
        for b in &report.bad {
            println!("  row {}: {}", b.row, b.reason);
        }
        if report.rows == 0 {
            println!("  the file holds no rows: nothing to train or evaluate on");
        }
    }
    Ok(if passes(&report) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every row good, and at least one (train and eval refuse an empty set).
fn passes(report: &LoadReport) -> bool {
    report.bad.is_empty() && report.rows > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmsr_trainer::data::BadRow;

    #[test]
    fn an_empty_file_or_a_bad_row_fails() {
        let report = |rows: usize, bad: usize| LoadReport {
            file: "f".into(),
            rows,
            valid: rows - bad,
            bad: (0..bad)
                .map(|row| BadRow {
                    row,
                    reason: "x".into(),
                })
                .collect(),
        };
        assert!(passes(&report(3, 0)));
        assert!(!passes(&report(3, 1)));
        assert!(!passes(&report(0, 0)));
    }
}
