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
    match args.kind {
        BenchKind::Pipeline => {
            let report = super::runtime()?.block_on(crate::bench::pipeline::run())?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                crate::bench::pipeline::print_table(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchKind::Rollout => {
            let rt = super::runtime()?;
            let opts = mmsr_trainer::bench::rollout::RolloutBenchOptions::default();
            let report = mmsr_trainer::bench::rollout::run(&opts, rt.handle())?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                mmsr_trainer::bench::rollout::print_table(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
        other => anyhow::bail!("`mmsr-host bench {other:?}` is not built yet"),
    }
}
