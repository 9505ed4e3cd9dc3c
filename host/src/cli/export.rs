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
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let used = mmsr_trainer::train::export_checkpoint(&args.checkpoint, &args.out)?;
    println!("exported {} to {}", used.display(), args.out.display());
    Ok(ExitCode::SUCCESS)
}
