//! `mmsr-host demo`: the whole demo chain on embedded defaults —
//! demo-data → sft → train (GRPO through the wasm tools on the offline
//! engine, which each stage starts in-process) → export → eval of SFT vs RL
//! vs RAG vs direct → report → the evidence. Every stage is the same code
//! as its own subcommand, run with the `configs/demo/*.toml` files and path
//! overrides, so what the demo shows is what a user's commands do.
use super::demo::{DemoDataArgs, SftArgs, run_demo_data, run_sft};
use super::eval::{EvalArgs, ReportArgs, run_eval, run_report};
use super::export::{self, ExportArgs};
use super::train::{self, TrainArgs};
use anyhow::{Context, bail};
use clap::Args;
use mmsr_trainer::demo::evidence::{self, DemoEvals, Margins};
use mmsr_trainer::eval::{EvalReport, report_file_name};
use mmsr_trainer::train::StopRequest;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo world goes (replaced if it holds one).
    #[arg(long, default_value = "demo")]
    pub world: PathBuf,
    /// The chain's run dir: sft/, rl/, eval/, report/ (replaced if it holds a demo run).
    #[arg(long, default_value = "runs/demo")]
    pub runs: PathBuf,
    /// Seed of the world and of every stage.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The folder with sft.toml, train.toml, eval.toml and prompts/.
    #[arg(long, default_value = "configs/demo")]
    pub configs: PathBuf,
    /// A shortened chain (small world, few steps) that checks the plumbing in a minute.
    #[arg(long)]
    pub quick: bool,
    /// How much the reward gain must exceed (the README's seed-to-seed noise).
    #[arg(long, default_value_t = 0.0)]
    pub margin_reward: f64,
    /// How much on-demand EM must beat direct EM by on search-required questions (a fraction).
    #[arg(long, default_value_t = 0.0)]
    pub margin_em: f64,
    /// How much the search ratio on search-required questions must exceed search-free's.
    #[arg(long, default_value_t = 0.0)]
    pub margin_search: f64,
}

/// `mmsr-host evidence`: issue 6's directions over several seeds' demo runs.
#[derive(Args, Debug)]
pub struct EvidenceArgs {
    /// Demo run dirs (`demo --runs`), one per seed, each with its evidence.json.
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// Print the checks as JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// Each direction's mean gap over the runs against the noise they measure;
/// exits 1 when one does not clear it.
pub fn run_evidence(args: EvidenceArgs) -> anyhow::Result<ExitCode> {
    let mut runs = Vec::with_capacity(args.runs.len());
    for dir in &args.runs {
        let path = dir.join(MARKER);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: no demo evidence here", path.display()))?;
        let checks: Vec<evidence::Check> = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a demo's evidence", path.display()))?;
        runs.push(checks);
    }
    let checks = evidence::across_seeds(&runs)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", evidence::render_across(&checks));
    }
    let passed = checks.iter().filter(|c| c.passed).count();
    eprintln!(
        "{passed} of {} directions clear the seed-to-seed noise over {} runs",
        checks.len(),
        runs.len()
    );
    Ok(if passed == checks.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The file that marks a run dir as this command's, so it may be replaced.
const MARKER: &str = "evidence.json";
/// The world of `--quick`: enough of every kind of question to exercise each stage.
const QUICK_WORLD: &str =
    "vocab_size = 700\n[world]\nknown = 10\nunknown_train = 20\nunknown_test = 10\ndecoys = 10\n";

struct Stage {
    n: usize,
    started: Instant,
}

impl Stage {
    fn next(&mut self, what: &str) {
        self.n += 1;
        println!(
            "\n== [{}/7] {what} ({:.0}s in) ==",
            self.n,
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn ok(code: ExitCode, stage: &str) -> anyhow::Result<()> {
    if code == ExitCode::SUCCESS {
        Ok(())
    } else {
        bail!("demo stage `{stage}` failed")
    }
}

/// Whether the SFT config names `sft.extra_train` datasets.
fn uses_extra_train(path: &Path) -> anyhow::Result<bool> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    Ok(table
        .get("sft")
        .and_then(|s| s.get("extra_train"))
        .and_then(|v| v.as_array())
        .is_some_and(|a| !a.is_empty()))
}

fn fresh_runs_dir(runs: &Path) -> anyhow::Result<()> {
    if let Ok(mut entries) = std::fs::read_dir(runs) {
        if entries.next().is_some() && !runs.join(MARKER).exists() && !runs.join("sft").exists() {
            bail!(
                "{} is not empty and holds no demo run; choose another --runs",
                runs.display()
            );
        }
        std::fs::remove_dir_all(runs).with_context(|| format!("clearing {}", runs.display()))?;
    }
    std::fs::create_dir_all(runs).with_context(|| format!("creating {}", runs.display()))
}

pub fn run_demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let s = |p: &Path| p.display().to_string();
    let world = &args.world;
    let runs = &args.runs;
    let cfg = |name: &str| args.configs.join(name);
    for name in ["sft.toml", "train.toml", "eval.toml"] {
        anyhow::ensure!(cfg(name).is_file(), "{} is missing", cfg(name).display());
    }
    fresh_runs_dir(runs)?;
    let mut stage = Stage {
        n: 0,
        started: Instant::now(),
    };

    stage.next("demo-data: the world, its corpus, datasets and tiny model files");
    let world_config = if args.quick {
        let path = runs.join("quick-world.toml");
        std::fs::write(&path, QUICK_WORLD)?;
        Some(path)
    } else {
        None
    };
    let prompts = cfg("prompts");
    ok(
        run_demo_data(DemoDataArgs {
            out: world.clone(),
            seed: args.seed,
            engine_url: mmsr_trainer::demo::DEFAULT_ENGINE_URL.into(),
            config: world_config,
            tokenizer_text: ["first_turn", "after_image_search", "after_text_search"]
                .iter()
                .map(|n| prompts.join(format!("{n}.txt")))
                .collect(),
            json: false,
        })?,
        "demo-data",
    )?;

    // Paths and seeds every stage shares; the local engine serves the world's corpus.
    let common = [
        format!("run.seed={}", args.seed),
        format!("rollout.prompts_dir={:?}", s(&prompts)),
        format!("search.corpus={:?}", s(&world.join("corpus"))),
        format!("search.cache.path={:?}", s(&runs.join("tool-cache.redb"))),
    ];
    let with = |extra: &[String]| -> Vec<String> { common.iter().chain(extra).cloned().collect() };
    let quick = |normal: &[String], short: &[&str]| -> Vec<String> {
        let mut v = normal.to_vec();
        if args.quick {
            v.extend(short.iter().map(|x| x.to_string()));
        }
        v
    };

    stage.next("sft: the warm start on the ideal searcher's trajectories");
    let sft_model = runs.join("sft").join("model");
    let mut sft_paths = vec![
        format!("run.dir={:?}", s(&runs.join("sft"))),
        format!("model.path={:?}", s(&world.join("model"))),
        format!("data.train={:?}", s(&world.join("data/train.parquet"))),
        format!("sft.world={:?}", s(&world.join("world.json"))),
        format!("sft.out={:?}", s(&sft_model)),
    ];
    // A config that reads more data gets this world's known views instead.
    if uses_extra_train(&cfg("sft.toml"))? {
        sft_paths.push(format!(
            "sft.extra_train=[{:?}]",
            s(&world.join("data/known_views.parquet"))
        ));
    }
    ok(
        run_sft(
            SftArgs {
                config: cfg("sft.toml"),
                json: false,
                resume: false,
                overrides: quick(&with(&sft_paths), &["run.epochs=1"]),
            },
            StopRequest::default(),
        )?,
        "sft",
    )?;

    stage.next("train: GRPO with the wasm search tools in the loop");
    let rl = runs.join("rl");
    ok(
        train::run(
            TrainArgs {
                config: cfg("train.toml"),
                overrides: quick(
                    &with(&[
                        format!("run.dir={:?}", s(&rl)),
                        format!("model.path={:?}", s(&sft_model)),
                        format!("data.train={:?}", s(&world.join("data/train.parquet"))),
                        // For train.toml's [val], if it asks for validation.
                        format!("data.val={:?}", s(&world.join("data/test.parquet"))),
                    ]),
                    &[
                        "run.total_steps=2",
                        "run.save_every=2",
                        "rollout.batch_prompts=2",
                        "rollout.n=2",
                        "run.rollouts_every=2",
                    ],
                ),
                resume: false,
            },
            StopRequest::default(),
        )?,
        "train",
    )?;

    stage.next("export: the GRPO policy as a transformers-loadable dir");
    let rl_model = rl.join("model");
    ok(
        export::run(ExportArgs {
            checkpoint: rl.clone(),
            out: rl_model.clone(),
            best: false,
        })?,
        "export",
    )?;

    stage.next("eval: SFT vs RL on demand, RAG and direct, on held-out questions");
    let evals = [
        ("sft-on-demand", "on-demand", &sft_model),
        ("rl-on-demand", "on-demand", &rl_model),
        ("rl-rag", "rag", &rl_model),
        ("rl-direct", "direct", &rl_model),
    ];
    for (label, workflow, model) in evals {
        ok(
            run_eval(
                EvalArgs {
                    config: cfg("eval.toml"),
                    workflow: workflow.into(),
                    label: Some(label.into()),
                    judge_url: None,
                    judge_model: None,
                    json: false,
                    resume: false,
                    overrides: quick(
                        &with(&[
                            format!("run.dir={:?}", s(runs)),
                            format!("model.path={:?}", s(model)),
                            format!("data.val={:?}", s(&world.join("data/test.parquet"))),
                        ]),
                        &["eval.max_samples=12"],
                    ),
                },
                StopRequest::default(),
            )?,
            "eval",
        )?;
    }

    stage.next("report: plots and one HTML page");
    ok(
        run_report(ReportArgs {
            run_dir: runs.clone(),
        })?,
        "report",
    )?;

    stage.next("evidence: does it learn when to search?");
    let load = |label: &str| {
        EvalReport::load(&runs.join("eval").join(report_file_name(label))).map(|r| r.summary)
    };
    let (sft, rl_od, rl_direct) = (
        load("sft-on-demand")?,
        load("rl-on-demand")?,
        load("rl-direct")?,
    );
    let checks = evidence::checks(
        &DemoEvals {
            sft_on_demand: &sft,
            rl_on_demand: &rl_od,
            rl_direct: &rl_direct,
        },
        &Margins {
            reward: args.margin_reward,
            accuracy: args.margin_em,
            search_ratio: args.margin_search,
        },
    );
    print!("{}", evidence::render(&checks));
    std::fs::write(
        runs.join(MARKER),
        serde_json::to_string_pretty(&checks)? + "\n",
    )?;
    let passed = checks.iter().filter(|c| c.passed).count();
    println!(
        "{passed} of {} directions hold; the whole chain took {:.0}s. Report: {}",
        checks.len(),
        stage.started.elapsed().as_secs_f64(),
        runs.join("report").join("index.html").display()
    );
    Ok(ExitCode::SUCCESS)
}
