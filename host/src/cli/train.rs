//! `mmsr-host train --config FILE [key=value …] [--resume]`: multi-turn GRPO
//! with the wasm search tools of the config's `[search]` section in the loop.
use anyhow::{Context, bail};
use clap::Args;
use mmsr_trainer::eval::HeldOut;
use mmsr_trainer::policy::TrainablePolicy;
use mmsr_trainer::train::{
    PolicyInit, PolicyVisitor, RunControl, RunSummary, StopRequest, TrainConfig, Trainer,
    load_samples, with_policy,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::pipeline::{SearchConfig, SearchPipeline};
use crate::runtime::HostOptions;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The training config (TOML; see configs/qwen2_5_vl_7b.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Overrides, veRL-style: `rollout.n=8 actor.lr=1e-6`.
    #[arg(value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Continue from the latest checkpoint in `run.dir`.
    #[arg(long)]
    pub resume: bool,
}

/// The `[search]` section as the pipeline reads it.
pub fn search_config(cfg: &TrainConfig) -> anyhow::Result<SearchConfig> {
    if cfg.search.is_empty() {
        bail!(
            "the config has no [search] section (copy one from configs/search-local.toml or configs/search-remote.toml)"
        );
    }
    let search: SearchConfig =
        mmsr_trainer::train::from_value("search", toml::Value::Table(cfg.search.clone()))?;
    search.validate().context("[search]")?;
    Ok(search)
}

struct Train {
    cfg: TrainConfig,
    tools: Arc<SearchPipeline>,
    handle: tokio::runtime::Handle,
    samples: Vec<mmsr_trainer::data::Sample>,
    held_out: Option<HeldOut<SearchPipeline>>,
    control: RunControl,
}

impl PolicyVisitor for Train {
    type Output = RunSummary;
    fn visit<P: TrainablePolicy>(self, policy: P) -> anyhow::Result<RunSummary> {
        let mut trainer = Trainer::new(
            self.cfg,
            policy,
            self.tools,
            self.handle,
            self.samples,
            self.control,
        )?;
        if let Some(v) = self.held_out {
            trainer = trainer.with_validator(Box::new(v));
        }
        trainer.run()
    }
}

/// `stop`, once requested, ends the run after the step under way.
pub fn run(args: TrainArgs, stop: StopRequest) -> anyhow::Result<ExitCode> {
    let cfg = TrainConfig::load(&args.config, &args.overrides)?;
    // Before the data, tools and model take their time to load.
    cfg.validate_grpo()
        .with_context(|| format!("config {}", args.config.display()))?;
    let search = search_config(&cfg)?;
    let samples = load_samples(&cfg.data)?;
    let rt = super::runtime()?;
    let tools = rt
        .block_on(SearchPipeline::from_config(&search, HostOptions::default()))
        .context("building the search tools of [search]")?;
    let tools = Arc::new(tools);
    let held_out = HeldOut::from_config(&cfg, tools.clone(), rt.handle().clone())?;
    let train = Train {
        cfg: cfg.clone(),
        tools,
        handle: rt.handle().clone(),
        samples,
        held_out,
        control: RunControl::new(args.resume).with_stop(stop),
    };
    let summary = with_policy(&cfg.model, PolicyInit::Load, cfg.run.seed, train)?;
    match &summary.last {
        Some(m) => println!(
            "trained steps {}..{} in {}: reward {:.3}, accuracy {:.3}, search ratio {:.2}",
            summary.first_step + 1,
            summary.last_step,
            cfg.run.dir,
            m.reward,
            m.accuracy,
            m.search.ratio
        ),
        None => println!("{} is already at step {}", cfg.run.dir, summary.last_step),
    }
    if let Some(ck) = &summary.checkpoint {
        println!("checkpoint: {}", ck.display());
    }
    if let Some(b) = &summary.best {
        println!(
            "best validation: step {}, reward {:.3}, accuracy {:.3} ({}; `export --best`)",
            b.step, b.reward, b.accuracy, b.checkpoint
        );
    }
    if summary.failed_validations > 0 {
        eprintln!(
            "warning: {} validation(s) failed (errors in the log above); {} holds the others",
            summary.failed_validations,
            std::path::Path::new(&cfg.run.dir)
                .join(mmsr_trainer::train::VAL_METRICS_FILE)
                .display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
