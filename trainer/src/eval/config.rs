//! Configs of the commands that run a policy outside GRPO (`sft`, `eval`):
//! the trainer's own sections (`[run]`, `[model]`, `[data]`, `[rollout]`,
//! `[actor]`, `[search]`, … as [`TrainConfig`] reads and checks them) plus
//! the command's section (`[sft]` or `[eval]`). One file can hold both
//! command sections; each command reads its own. Dotted overrides
//! (`eval.temperature=0.7`) reach every section.

use crate::rollout::RolloutConfig;
use crate::train::config::{TrainConfig, apply_override, from_override, from_value};
use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The command sections, set aside before the rest is read as a
/// [`TrainConfig`].
pub const COMMAND_SECTIONS: [&str; 2] = ["sft", "eval"];

/// A command's section type: its own value checks, with keys named as
/// `section.key`.
pub trait Section: DeserializeOwned + Serialize + Default {
    fn validate(&self, base: &TrainConfig) -> Result<()>;
}

/// Reads `path`, applies `key=value` overrides, and splits off `[section]`.
pub fn load_command_config<S: Section>(
    path: &Path,
    overrides: &[String],
    section: &str,
) -> Result<(TrainConfig, S)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("config {} is not valid TOML", path.display()))?;
    command_config_from_table(table, overrides, section)
        .map_err(|e| from_override(e, overrides))
        .with_context(|| format!("config {}", path.display()))
}

pub fn command_config_from_table<S: Section>(
    mut table: toml::Table,
    overrides: &[String],
    section: &str,
) -> Result<(TrainConfig, S)> {
    debug_assert!(COMMAND_SECTIONS.contains(&section));
    for o in overrides {
        apply_override(&mut table, o)?;
    }
    let mut own = None;
    for name in COMMAND_SECTIONS {
        if let Some(value) = table.remove(name)
            && name == section
        {
            own = Some(value);
        }
    }
    let base = TrainConfig::from_table(table)?;
    let own: S = match own {
        None => S::default(),
        Some(toml::Value::Table(t)) => from_value(section, toml::Value::Table(t))?,
        Some(other) => bail!("`{section}` must be a table, got {}", other.type_str()),
    };
    own.validate(&base)?;
    Ok((base, own))
}

/// Where a run's eval reports go: `RUN_DIR/eval/<label>.json`.
pub fn report_path(run_dir: &Path, label: &str) -> PathBuf {
    run_dir
        .join(crate::report::EVAL_DIR)
        .join(super::report_file_name(label))
}

/// The `[eval]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSection {
    /// The dataset split to evaluate (empty: `data.val`).
    pub data: String,
    /// Evaluate only N questions, spread evenly over the split (0: all).
    pub max_samples: usize,
    /// The report's name (empty: the workflow's name); `--label` wins.
    pub label: String,
    /// Sampling of every model turn; 0 is greedy (one rollout per question).
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub seed: u64,
    /// Questions rolled out together: bounds the sessions (and their
    /// caches) alive at once.
    pub chunk: usize,
    /// A search that has not answered by then is an error observation.
    pub tool_timeout_s: u64,
    pub rag: RagConfig,
    pub judge: JudgeConfig,
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            data: String::new(),
            max_samples: 0,
            label: String::new(),
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            chunk: 64,
            tool_timeout_s: 300,
            rag: RagConfig::default(),
            judge: JudgeConfig::default(),
        }
    }
}

/// The forced turns of the fixed RAG workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RagConfig {
    /// The assistant turn the environment writes first: an image search.
    pub image_turn: String,
    /// The reason of the text search forced when the model writes none;
    /// its query is the question itself (the fixed pipeline's query).
    pub text_reason: String,
}

impl Default for RagConfig {
    fn default() -> Self {
        Self {
            image_turn:
                "<reason>I will search the web with the image first.</reason><search><img></search>"
                    .into(),
            text_reason: "I will search the web with the question.".into(),
        }
    }
}

/// The optional LLM judge: an OpenAI-compatible chat endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JudgeConfig {
    /// Base URL (`…/v1/chat/completions` is appended); empty: no judge.
    pub url: String,
    pub model: String,
    /// The environment variable holding the API key (unset: no key sent).
    pub api_key_env: String,
    pub concurrency: usize,
    /// Per call, each attempt.
    pub timeout_s: u64,
    /// Attempts per question, the first included; 429, 5xx, broken
    /// connections and time-outs are retried with backoff.
    pub max_attempts: u32,
    /// Consecutive failures (time-outs, 5xx, broken connections; not 429s)
    /// after which the judge is not called for `breaker_cooldown_s` (its
    /// questions fail at once), so a dead judge costs a few time-outs, not
    /// one per question.
    pub breaker_failures: u32,
    pub breaker_cooldown_s: u64,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            model: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            concurrency: 8,
            timeout_s: 60,
            max_attempts: 3,
            breaker_failures: 5,
            breaker_cooldown_s: 60,
        }
    }
}

impl JudgeConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }
}

impl EvalSection {
    /// The dataset to evaluate: `eval.data`, else `data.val`.
    pub fn dataset<'a>(&'a self, base: &'a TrainConfig) -> &'a str {
        if self.data.is_empty() {
            &base.data.val
        } else {
            &self.data
        }
    }

    /// The rollout settings of an eval: the run's limits and prompts with
    /// the eval's sampling.
    pub fn rollout(&self, base: &TrainConfig) -> RolloutConfig {
        RolloutConfig {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            n: 1,
            ..base.rollout.clone()
        }
    }
}

impl Section for EvalSection {
    fn validate(&self, base: &TrainConfig) -> Result<()> {
        let mut errs = Vec::new();
        if self.dataset(base).is_empty() {
            errs.push("set eval.data (or data.val): the dataset split to evaluate".to_string());
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            errs.push(format!(
                "eval.temperature must be ≥ 0 (0: greedy), got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            errs.push(format!("eval.top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.chunk == 0 {
            errs.push("eval.chunk must be at least 1".into());
        }
        if self.tool_timeout_s == 0 {
            errs.push("eval.tool_timeout_s must be at least 1".into());
        }
        if crate::protocol::parse_action(&self.rag.image_turn)
            != Some(crate::protocol::Action::ImageSearch)
        {
            errs.push(format!(
                "eval.rag.image_turn must end with <search><img></search>, got {:?}",
                self.rag.image_turn
            ));
        }
        if self.judge.enabled() {
            if self.judge.model.is_empty() {
                errs.push("eval.judge.model must be set when eval.judge.url is".into());
            }
            if self.judge.concurrency == 0 {
                errs.push("eval.judge.concurrency must be at least 1".into());
            }
            if self.judge.max_attempts == 0 {
                errs.push("eval.judge.max_attempts must be at least 1".into());
            }
            if self.judge.breaker_failures == 0 {
                errs.push("eval.judge.breaker_failures must be at least 1".into());
            }
            if !(self.judge.url.starts_with("http://") || self.judge.url.starts_with("https://")) {
                errs.push(format!(
                    "eval.judge.url must be an http(s) URL, got {:?}",
                    self.judge.url
                ));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            bail!("{}", errs.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, overrides: &[&str]) -> Result<(TrainConfig, EvalSection)> {
        let table: toml::Table = toml::from_str(text).unwrap();
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        command_config_from_table(table, &overrides, "eval")
    }

    #[test]
    fn sections_split_and_overrides_reach_them() {
        let text = "[data]\nval = \"t.parquet\"\n[eval]\ntemperature = 0.5\n[sft]\nbatch_size = 3\n[rollout]\nprompts_dir = \"p\"\n";
        let (base, eval) = parse(text, &["eval.seed=7", "rollout.max_turn_tokens=64"]).unwrap();
        assert_eq!((eval.temperature, eval.seed), (0.5, 7));
        assert_eq!(eval.dataset(&base), "t.parquet");
        let r = eval.rollout(&base);
        assert_eq!(
            (r.temperature, r.max_turn_tokens, r.prompts_dir.as_str()),
            (0.5, 64, "p")
        );
        // Greedy by default.
        let (_, eval) = parse("[eval]\ndata = \"x.parquet\"\n", &[]).unwrap();
        assert_eq!(eval.temperature, 0.0);
    }

    #[test]
    fn broken_configs_are_named() {
        let err = |text: &str, o: &[&str]| format!("{:#}", parse(text, o).unwrap_err());
        let e = err("[eval]\ndata = \"x\"\ntemprature = 1\n", &[]);
        assert!(
            e.contains("`eval.temprature`: unknown field `temprature`")
                && e.ends_with("(did you mean `eval.temperature`?)"),
            "{e}"
        );
        let e = err("", &[]);
        assert!(e.contains("eval.data (or data.val)"), "{e}");
        let e = err(
            "[eval]\ndata = \"x\"\n",
            &["eval.temperature=-1", "eval.chunk=0"],
        );
        assert!(
            e.contains("eval.temperature") && e.contains("eval.chunk"),
            "{e}"
        );
        let e = err(
            "[eval]\ndata = \"x\"\n[eval.judge]\nurl = \"ftp://j\"\n",
            &[],
        );
        assert!(
            e.contains("eval.judge.model") && e.contains("eval.judge.url"),
            "{e}"
        );
        let e = err(
            "[eval]\ndata = \"x\"\n[eval.judge]\nurl = \"http://j\"\nmodel = \"m\"\n",
            &["eval.judge.max_attempts=0", "eval.judge.breaker_failures=0"],
        );
        assert!(
            e.contains("eval.judge.max_attempts") && e.contains("eval.judge.breaker_failures"),
            "{e}"
        );
        let e = err(
            "[eval]\ndata = \"x\"\n[eval.rag]\nimage_turn = \"<answer>a</answer>\"\n",
            &[],
        );
        assert!(e.contains("eval.rag.image_turn"), "{e}");
        // The shared sections keep the trainer's checks.
        let e = err("[eval]\ndata = \"x\"\n[rollout]\nmax_rond = 3\n", &[]);
        assert!(e.contains("max_rond"), "{e}");
        let e = err("[eval]\ndata = \"x\"\n", &["rollout.n=0"]);
        assert!(e.contains("rollout.n must be at least 1"), "{e}");
        let e = err("eval = 3\n", &[]);
        assert!(e.contains("`eval` must be a table"), "{e}");
    }

    #[test]
    fn shipped_demo_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo");
        let (base, eval): (_, EvalSection) =
            load_command_config(&dir.join("eval.toml"), &[], "eval").unwrap();
        assert_eq!(eval.dataset(&base), "demo/data/test.parquet");
        assert_eq!(eval.rollout(&base).temperature, 0.0, "greedy");
        let (base, sft) = crate::sft::config::load(&dir.join("sft.toml"), &[]).unwrap();
        assert_eq!(sft.init, crate::sft::PolicyInit::Random);
        assert_eq!(base.rollout.prompts_dir, "configs/demo/prompts");
    }

    #[test]
    fn reports_go_to_the_run_dirs_eval_folder() {
        assert_eq!(
            report_path(Path::new("runs/x"), "rl"),
            Path::new("runs/x/eval/rl.json")
        );
    }
}
