//! `mmsr-host cache stats|export FILE|import FILE`: inspect the tool-result
//! cache and move its entries between machines.
use crate::cache::CacheStore;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the cache lives unless `--cache` or `MMSR_CACHE` says otherwise.
pub const DEFAULT_CACHE: &str = "runs/tool-cache.redb";

#[derive(Args, Debug)]
pub struct CacheArgs {
    /// The cache file (redb).
    #[arg(long, env = "MMSR_CACHE", default_value = DEFAULT_CACHE, global = true)]
    pub cache: PathBuf,
    #[command(subcommand)]
    pub cmd: CacheCmd,
}

#[derive(Subcommand, Debug)]
pub enum CacheCmd {
    /// Entries, size and lifetime hit/miss counters.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Write every live entry to FILE (JSON lines).
    Export { file: PathBuf },
    /// Merge an export into the cache; newer entries win.
    Import { file: PathBuf },
}

pub fn run(args: CacheArgs) -> anyhow::Result<ExitCode> {
    let store = CacheStore::open(&args.cache)?;
    match args.cmd {
        CacheCmd::Stats { json } => {
            let stats = store.stats()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                let lookups = stats.hits + stats.misses + stats.coalesced;
                let rate = if lookups == 0 {
                    0.0
                } else {
                    100.0 * stats.hits as f64 / lookups as f64
                };
                println!("cache        {}", stats.path.display());
                println!(
                    "entries      {} ({} expired)",
                    stats.entries, stats.expired_entries
                );
                println!("file size    {:.1} KiB", stats.file_bytes as f64 / 1024.0);
                println!("hits         {} ({rate:.1}% of lookups)", stats.hits);
                println!("misses       {}", stats.misses);
                println!("coalesced    {}", stats.coalesced);
                println!("writes       {}", stats.writes);
            }
        }
        CacheCmd::Export { file } => {
            // Written beside the target and renamed over it only when whole:
            // a full disk must not cost the previous export.
            let dir = match file.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => std::path::Path::new("."),
            };
            let writing = || format!("exporting to {}", file.display());
            let tmp = tempfile::NamedTempFile::new_in(dir).with_context(writing)?;
            // A temp file is created 0600; keep the old export's mode, or 0644.
            let mode = std::fs::metadata(&file)
                .map(|m| m.permissions())
                .unwrap_or_else(|_| std::os::unix::fs::PermissionsExt::from_mode(0o644));
            tmp.as_file().set_permissions(mode).with_context(writing)?;
            let mut out = BufWriter::new(tmp);
            let n = store.export(&mut out).with_context(writing)?;
            let tmp = out
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(writing)?;
            tmp.as_file().sync_all().with_context(writing)?;
            tmp.persist(&file)
                .map_err(|e| e.error)
                .with_context(writing)?;
            eprintln!("exported {n} entries to {}", file.display());
        }
        CacheCmd::Import { file } => {
            let input = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let report = store.import(&mut BufReader::new(input), &file.display().to_string())?;
            eprintln!(
                "imported from {}: {} added, {} replaced, {} kept (newer here), {} expired",
                file.display(),
                report.added,
                report.replaced,
                report.kept,
                report.expired
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
