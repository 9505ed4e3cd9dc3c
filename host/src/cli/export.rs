//! `mmsr-host export --checkpoint DIR --out DIR`: a transformers-loadable
//! model dir from a checkpoint (LoRA adapters merged by the model's export).
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A checkpoint dir, or a run dir (its latest checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Where to write the model dir.
    #[arg(long)]
    pub out: PathBuf,
    /// The run dir's best validated checkpoint (`val.keep_best`), not its
    /// latest.
    #[arg(long)]
    pub best: bool,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let checkpoint = if args.best {
        mmsr_trainer::train::resolve_best(&args.checkpoint)?
    } else {
        args.checkpoint
    };
    let used = mmsr_trainer::train::export_checkpoint(&checkpoint, &args.out)?;
    println!("exported {} to {}", used.display(), args.out.display());
    Ok(ExitCode::SUCCESS)
}
