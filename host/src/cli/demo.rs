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
use mmsr_trainer::train::{PolicyVisitor, RunControl, StopRequest, with_policy};
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
    /// Continue the unfinished run in `run.dir` from its saved train set and
    /// latest checkpoint (the config must be the same).
    #[arg(long)]
    pub resume: bool,
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

const STAGING_NEW: &str = ".demo-data-new-";
const STAGING_OLD: &str = ".demo-data-old-";

/// What a killed run into `out` left beside it (its staging dirs carry its
/// name and pid): a half-built world is removed; an old world moved aside
/// is put back if `out` is gone (killed between the two renames), else
/// removed. Dirs of a process still running are left alone.
fn sweep_leftovers(parent: &Path, out: &Path, name: &str) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let (old, rest) = if let Some(r) = file_name.strip_prefix(STAGING_NEW) {
            (false, r)
        } else if let Some(r) = file_name.strip_prefix(STAGING_OLD) {
            (true, r)
        } else {
            continue;
        };
        // `{name}-{pid}-{random}`, the random part without dashes: so
        // another world whose name starts `{name}-` is not taken for ours.
        let Some(pid) = rest
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| match r.split('-').collect::<Vec<_>>()[..] {
                [pid, _random] => pid.parse::<u32>().ok(),
                _ => None,
            })
        else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let path = entry.path();
        if old && !out.exists() {
            std::fs::rename(&path, out).with_context(|| {
                format!(
                    "putting the old world {} back into {}",
                    path.display(),
                    out.display()
                )
            })?;
            tracing::warn!(world = %out.display(), "a killed run had moved the old world aside; put it back");
        } else {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing a killed run's {}", path.display()))?;
        }
    }
    Ok(())
}

/// Whether `pid` is a running process; where that cannot be told (no
/// `/proc`), it is taken to be, so nothing is removed.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
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
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "world".into());
    sweep_leftovers(parent, out, &name)?;
    let pid = std::process::id();
    let staging = tempfile::Builder::new()
        .prefix(&format!("{STAGING_NEW}{name}-{pid}-"))
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging dir in {}", parent.display()))?;
    let summary = demo::generate(staging.path(), config, texts)?;
    let old = match std::fs::read_dir(out).map(|mut e| e.next().is_some()) {
        Ok(true) => {
            let old = tempfile::Builder::new()
                .prefix(&format!("{STAGING_OLD}{name}-{pid}-"))
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
    control: RunControl,
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
            self.control,
        )
    }
}

/// `mmsr-host sft --config FILE [key=value …]`: the warm start on the demo
/// world's scripted trajectories, searches answered by the `[search]` tools.
/// `stop`, once requested, ends the fit after the step under way.
pub fn run_sft(args: SftArgs, stop: StopRequest) -> anyhow::Result<ExitCode> {
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
        control: RunControl::new(args.resume).with_stop(stop),
    };
    let summary = with_policy(&base.model, section.init, base.run.seed, job)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let d = &summary.data;
        let resumed = match summary.resumed_at {
            Some(step) => format!(" (resumed after step {step})"),
            None => String::new(),
        };
        println!(
            "sft: {} trajectories ({} direct, {} with search), {} steps in {:.1}s{resumed}",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_dead_runs_are_swept_and_an_old_world_put_back() {
        let dir = tempfile::tempdir().unwrap();
        // A pid that has ended (and is not reused within the test).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let live = std::process::id();
        let make = |name: &str| {
            let p = dir.path().join(name);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("world.json"), name).unwrap();
        };
        make(&format!(".demo-data-new-w-{dead}-a"));
        make(&format!(".demo-data-new-w-{live}-b"));
        make(&format!(".demo-data-new-w-x-{dead}-c"));
        make(&format!(".demo-data-new-w-5-{dead}-f"));
        make(&format!(".demo-data-old-w-{dead}-d"));
        let out = dir.path().join("w");
        sweep_leftovers(dir.path(), &out, "w").unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        // The live run's dir and another world's ("w-x") stay; the old
        // world of the run killed between its renames is `w` again.
        let mut want = [
            format!(".demo-data-new-w-5-{dead}-f"),
            format!(".demo-data-new-w-{live}-b"),
            format!(".demo-data-new-w-x-{dead}-c"),
            "w".to_string(),
        ];
        want.sort();
        assert_eq!(left, want);
        assert_eq!(
            std::fs::read_to_string(out.join("world.json")).unwrap(),
            format!(".demo-data-old-w-{dead}-d")
        );
        // With `out` in place, an old world left aside is removed instead.
        make(&format!(".demo-data-old-w-{dead}-e"));
        sweep_leftovers(dir.path(), &out, "w").unwrap();
        assert!(
            !dir.path()
                .join(format!(".demo-data-old-w-{dead}-e"))
                .exists()
        );
        assert!(out.join("world.json").exists());
    }
}
