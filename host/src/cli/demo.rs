//! `mmsr-host demo-data | sft | demo` (owner: demo world).
use super::train::search_config;
use crate::pipeline::SearchPipeline;
use crate::runtime::HostOptions;
use anyhow::{Context, bail};
use clap::Args;
use mmsr_trainer::demo::{self, DemoDataConfig};
use mmsr_trainer::policy::TrainablePolicy;
use mmsr_trainer::sft::{self, DemoScripts, SftSection};
use mmsr_trainer::train::config::TrainConfig;
use mmsr_trainer::train::{PolicyVisitor, with_policy};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct DemoDataArgs {
    /// Output directory (created; an existing demo world in it is replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the world: the same seed writes the same bytes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Base URL the offline engine will serve the corpus at; the question
    /// photos' `image_urls` point there.
    #[arg(long, default_value = demo::DEFAULT_ENGINE_URL)]
    pub engine_url: String,
    /// TOML with `[world]`, `[model]`, `vocab_size`: sizes other than the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Text files (e.g. the rollout's prompt files) the tokenizer also learns from.
    #[arg(long = "tokenizer-text")]
    pub tokenizer_text: Vec<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SftArgs {
    /// TOML with the trainer's sections, `[sft]` and `[search]`.
    #[arg(long)]
    pub config: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Dotted overrides, e.g. `data.max_samples=200 run.epochs=3`.
    pub overrides: Vec<String>,
}

/// Refuses to write into a non-empty directory that is not a demo world,
/// so a typo in `--out` never scatters files over someone's data.
fn check_out_dir(out: &Path) -> anyhow::Result<()> {
    let Ok(mut entries) = std::fs::read_dir(out) else {
        return Ok(());
    };
    if entries.next().is_some() && !demo::Layout::new(out).world().exists() {
        bail!(
            "{} is not empty and holds no demo world (world.json); choose an empty or new directory",
            out.display()
        );
    }
    Ok(())
}

/// Generates into a fresh dir beside `out` and swaps it in when whole: an
/// interrupted or failed run leaves the old world as it was, never a mix of
/// two seeds (only the two renames at the end are not one step).
fn generate_whole(
    out: &Path,
    config: &DemoDataConfig,
    texts: &[String],
) -> anyhow::Result<demo::Summary> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".demo-data-new-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging dir in {}", parent.display()))?;
    let summary = demo::generate(staging.path(), config, texts)?;
    let old = match std::fs::read_dir(out).map(|mut e| e.next().is_some()) {
        Ok(true) => {
            let old = tempfile::Builder::new()
                .prefix(".demo-data-old-")
                .tempdir_in(parent)?
                .keep();
            std::fs::rename(out, &old)
                .with_context(|| format!("moving the old world {} aside", out.display()))?;
            Some(old)
        }
        Ok(false) => {
            std::fs::remove_dir(out).with_context(|| format!("replacing {}", out.display()))?;
            None
        }
        Err(_) => None,
    };
    std::fs::rename(staging.keep(), out)
        .with_context(|| format!("moving the new world into {}", out.display()))?;
    if let Some(old) = old {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("removing the old world (now {})", old.display()))?;
    }
    Ok(summary)
}

pub fn load_demo_config(path: Option<&Path>) -> anyhow::Result<DemoDataConfig> {
    let Some(path) = path else {
        return Ok(DemoDataConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing demo-data config {}", path.display()))
}

pub fn run_demo_data(args: DemoDataArgs) -> anyhow::Result<ExitCode> {
    let mut config = load_demo_config(args.config.as_deref())?;
    config.world.seed = args.seed;
    config.engine_url = args.engine_url;
    check_out_dir(&args.out)?;
    let texts = args
        .tokenizer_text
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .with_context(|| format!("reading tokenizer text {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = std::time::Instant::now();
    let summary = generate_whole(&args.out, &config, &texts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "demo world (seed {}) written to {} in {:.1}s",
            summary.seed,
            args.out.display(),
            started.elapsed().as_secs_f64()
        );
        println!(
            "  towns              {} ({} known)",
            summary.towns, summary.known_towns
        );
        println!(
            "  corpus             {} pages, {} images",
            summary.pages, summary.corpus_images
        );
        println!(
            "  train questions    {} search-free, {} search-required",
            summary.train_search_free, summary.train_search_required
        );
        println!(
            "  test questions     {} search-free, {} search-required",
            summary.test_search_free, summary.test_search_required
        );
        println!(
            "  known-town views   {} more photos of search-free training questions (SFT)",
            summary.known_views
        );
        println!(
            "  tokenizer          {} tokens; {:.0}% of town-name words are one token",
            summary.vocab_size,
            100.0 * summary.single_token_name_words
        );
        println!(
            "  mean tokens        question {:.1}, answer {:.1}, page {:.1}; longest scripted trajectory {}",
            summary.mean_question_tokens,
            summary.mean_answer_tokens,
            summary.mean_page_tokens,
            summary.max_script_tokens
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct SftJob<'a> {
    base: &'a TrainConfig,
    sft: &'a SftSection,
    source: DemoScripts,
    tools: Arc<SearchPipeline>,
    handle: tokio::runtime::Handle,
}

impl PolicyVisitor for SftJob<'_> {
    type Output = sft::SftSummary;
    fn visit<P: TrainablePolicy>(self, mut policy: P) -> anyhow::Result<Self::Output> {
        sft::run_sft(
            self.base,
            self.sft,
            &mut policy,
            &self.source,
            self.tools,
            &self.handle,
        )
    }
}

/// `mmsr-host sft --config FILE [key=value …]`: the warm start on the demo
/// world's scripted trajectories, searches answered by the `[search]` tools.
pub fn run_sft(args: SftArgs) -> anyhow::Result<ExitCode> {
    let (base, section) = sft::config::load(&args.config, &args.overrides)?;
    let source = DemoScripts::load(Path::new(&section.world)).context("sft.world")?;
    let rt = super::runtime()?;
    let tools = rt
        .block_on(SearchPipeline::from_config(
            &search_config(&base)?,
            HostOptions::default(),
        ))
        .context("starting the search tools")?;
    let job = SftJob {
        base: &base,
        sft: &section,
        source,
        tools: Arc::new(tools),
        handle: rt.handle().clone(),
    };
    let summary = with_policy(&base.model, section.init, base.run.seed, job)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let d = &summary.data;
        println!(
            "sft: {} trajectories ({} direct, {} with search), {} steps in {:.1}s",
            d.direct + d.with_search,
            d.direct,
            d.with_search,
            summary.steps,
            summary.train_s
        );
        println!(
            "  searches: {} image, {} text, {} failed ({} trajectories dropped); {} trajectories' results lacked what the script read ({} dropped)",
            d.image_searches,
            d.text_searches,
            d.tool_errors,
            d.dropped,
            d.ungrounded,
            d.dropped_ungrounded
        );
        println!(
            "  loss {:.4} → {:.4}; model written to {}",
            summary.first_loss, summary.last_loss, summary.model_dir
        );
    }
    Ok(ExitCode::SUCCESS)
}
