//! `mmsr-host data check FILE [--json]`: loads a dataset with the trainer's
//! own loader and reports every bad row; exits non-zero if any is bad.
use anyhow::Result;
use clap::{Args, Subcommand};
use mmsr_trainer::data::{DataFormat, LoadOptions, inspect};
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
    }
    Ok(if report.bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
