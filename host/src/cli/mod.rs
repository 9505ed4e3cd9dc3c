//! `mmsr-host`: one subcommand per module; each parses its own arguments.

mod bench;
mod cache;
mod data;
mod demo;
mod demo_chain;
mod eval;
mod export;
mod serve_search;
mod stop;
mod tools;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "mmsr-host",
    version,
    about = "Train LMMs to search on demand, with sandboxed wasm search tools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List, inspect and call the wasm search tools of a manifest.
    #[command(subcommand)]
    Tools(tools::ToolsCmd),
    /// Serve the offline search engine (SerpApi- and Jina-compatible) over a corpus.
    ServeSearch(serve_search::ServeSearchArgs),
    /// Export, import or inspect the tool-result cache.
    Cache(cache::CacheArgs),
    /// Benchmarks that print their numbers against a baseline run side by side.
    Bench(bench::BenchArgs),
    /// Check a dataset with the trainer's own loader.
    #[command(subcommand)]
    Data(data::DataCmd),
    /// Multi-turn GRPO with search tools in the loop.
    Train(train::TrainArgs),
    /// Write a transformers-loadable model dir from a checkpoint.
    Export(export::ExportArgs),
    /// Generate the self-contained demo world (data, corpus, tokenizer, tiny model).
    DemoData(demo::DemoDataArgs),
    /// Supervised warm start on formatted trajectories.
    Sft(demo::SftArgs),
    /// Evaluate a workflow: direct, rag or on-demand.
    Eval(eval::EvalArgs),
    /// Plots and an HTML page for a run dir.
    Report(eval::ReportArgs),
    /// The whole demo chain on embedded defaults.
    Demo(demo_chain::DemoArgs),
    /// Issue 6's directions over several seeds' demo runs, against the noise they measure.
    Evidence(demo_chain::EvidenceArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Tools(cmd) => tools::run(cmd),
        Command::ServeSearch(args) => serve_search::run(args),
        Command::Cache(args) => cache::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Data(cmd) => data::run(cmd),
        Command::Train(args) => stop::stoppable(|s| train::run(args, s)),
        Command::Export(args) => export::run(args),
        Command::DemoData(args) => demo::run_demo_data(args),
        Command::Sft(args) => stop::stoppable(|s| demo::run_sft(args, s)),
        Command::Eval(args) => stop::stoppable(|s| eval::run_eval(args, s)),
        Command::Report(args) => eval::run_report(args),
        Command::Demo(args) => demo_chain::run_demo(args),
        Command::Evidence(args) => demo_chain::run_evidence(args),
    }
}

/// Logs go to stderr so `--json` output on stdout stays machine-readable.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MMSR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tantivy=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A multi-threaded tokio runtime for commands that talk to tools or serve.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
