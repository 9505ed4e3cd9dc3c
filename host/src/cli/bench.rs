//! `mmsr-host bench KIND [--json]`: each kind runs its baseline side by side
//! and prints ratios. The measuring code lives in `crate::bench` (host-side
//! kinds) and `mmsr_trainer::bench` (model-side kinds).
use clap::{Args, ValueEnum};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BenchArgs {
    pub kind: BenchKind,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BenchKind {
    Tools,
    Pipeline,
    Generate,
    Rollout,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    match args.kind {
        BenchKind::Tools => emit(
            &super::runtime()?.block_on(crate::bench::tools::run())?,
            json,
            crate::bench::tools::print_table,
        ),
        BenchKind::Pipeline => emit(
            &super::runtime()?.block_on(crate::bench::pipeline::run())?,
            json,
            crate::bench::pipeline::print_table,
        ),
        BenchKind::Generate => emit(
            &mmsr_trainer::bench::generate::run()?,
            json,
            mmsr_trainer::bench::generate::print_table,
        ),
        BenchKind::Rollout => {
            let rt = super::runtime()?;
            let opts = mmsr_trainer::bench::rollout::RolloutBenchOptions::default();
            emit(
                &mmsr_trainer::bench::rollout::run(&opts, rt.handle())?,
                json,
                mmsr_trainer::bench::rollout::print_table,
            )
        }
    }
}

/// One JSON object on stdout with `--json`, else the human table.
fn emit<R: serde::Serialize>(report: &R, json: bool, table: fn(&R)) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        table(report);
    }
    Ok(ExitCode::SUCCESS)
}
