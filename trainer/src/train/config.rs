//! The training config: TOML with veRL-style dotted overrides
//! (`rollout.n=8 actor.lr=1e-6`), checked at start. Unknown keys are named
//! with the closest known key; bad values are named with their key.

use crate::algo::{AdamWConfig, Decay, LossAgg, ObjectiveConfig};
use crate::data::{BadRowPolicy, DataFormat, LoadOptions};
use crate::reward::RewardConfig;
use crate::rollout::RolloutConfig;
use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub run: RunConfig,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub rollout: RolloutConfig,
    pub reward: RewardConfig,
    pub algo: AlgoConfig,
    pub actor: ActorConfig,
    /// Held-out validation between steps.
    pub val: ValConfig,
    /// The search tools' own section, read by the host that builds them.
    pub search: toml::Table,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The run dir: metrics, resolved config, checkpoints, TensorBoard.
    pub dir: String,
    pub seed: u64,
    /// Training steps (one rollout batch + update each); 0: from `epochs`.
    pub total_steps: usize,
    pub epochs: usize,
    /// Checkpoint every N steps (0: only at the end).
    pub save_every: usize,
    /// Checkpoints kept on disk (0: all).
    pub keep_checkpoints: usize,
    /// Every trajectory of every Nth step, with its searches' results and
    /// scores, to `RUN_DIR/rollouts/step-N.jsonl` (0: never).
    pub rollouts_every: usize,
    pub tensorboard: bool,
    /// indicatif progress bars (off in tests and when stderr is not a tty).
    pub progress: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            dir: "runs/default".into(),
            seed: 0,
            total_steps: 0,
            epochs: 1,
            save_every: 10,
            keep_checkpoints: 3,
            rollouts_every: 0,
            tensorboard: false,
            progress: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Which policy `path` holds ("auto": its config.json's `model_type`).
    pub kind: ModelKind,
    /// A transformers model dir (config.json, tokenizer.json, safetensors);
    /// for `kind = "bigram"`, an exported bigram dir or empty (random
    /// weights from `run.seed`).
    pub path: String,
    /// "bf16", "f16" or "f32".
    pub dtype: String,
    /// "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    pub device: String,
    pub freeze_vision: bool,
    pub gradient_checkpointing: bool,
    pub lora: LoraConfig,
}

/// The policy families `train/policy_factory.rs` can build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelKind {
    /// From `model_type` in `path`'s config.json.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "qwen2_5_vl")]
    Qwen2_5Vl,
    /// The testkit's tiny bigram LM, for CPU tests of the whole loop.
    #[serde(rename = "bigram")]
    Bigram,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: ModelKind::default(),
            path: String::new(),
            dtype: "bf16".into(),
            device: "auto".into(),
            freeze_vision: true,
            gradient_checkpointing: true,
            lora: LoraConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// 0 trains every weight that is not frozen.
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 0,
            alpha: 32.0,
            dropout: 0.0,
            target_modules: [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    pub train: String,
    /// Optional held-out set (empty: none).
    pub val: String,
    pub format: DataFormat,
    /// Folder that image file names are relative to (empty: the dataset
    /// file's folder).
    pub image_dir: String,
    pub on_bad_row: BadRowPolicy,
    pub shuffle: bool,
    /// Use only the first N valid samples (0: all).
    pub max_samples: usize,
}

impl DataConfig {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            format: self.format,
            image_dir: (!self.image_dir.is_empty()).then(|| PathBuf::from(&self.image_dir)),
            on_bad_row: self.on_bad_row,
        }
    }
}

/// Held-out validation during GRPO: the policy answers `data.val` (greedily
/// by default) under the on-demand workflow, as `mmsr-host eval` does, and one line per
/// validation goes to `RUN_DIR/val_metrics.jsonl`. It only reads the policy,
/// so a run learns the same with it on or off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValConfig {
    /// Validate after every N steps and after the last (0: never).
    pub every: usize,
    /// Validate the starting policy too (step 0).
    pub before_train: bool,
    /// Only N questions of `data.val`, spread evenly over it (0: all).
    pub max_samples: usize,
    /// Sampling of every model turn; 0 is greedy.
    pub temperature: f64,
    /// Questions rolled out together.
    pub chunk: usize,
    /// A search that has not answered by then is an error observation.
    pub tool_timeout_s: u64,
    /// Each validation's answers, turns and search results, as an eval
    /// report, to `RUN_DIR/val/step-N.json`.
    pub save_results: bool,
    /// Checkpoint the policy whenever a validation beats the best held-out
    /// reward so far, and keep that checkpoint through
    /// `run.keep_checkpoints`; `checkpoints/best.json` names it and
    /// `export --best` exports it. RL can get worse late in a run.
    pub keep_best: bool,
}

impl Default for ValConfig {
    fn default() -> Self {
        Self {
            every: 0,
            before_train: false,
            max_samples: 0,
            temperature: 0.0,
            chunk: 64,
            tool_timeout_s: 300,
            save_results: true,
            keep_best: false,
        }
    }
}

impl ValConfig {
    pub fn enabled(&self) -> bool {
        self.every > 0 || self.before_train
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlgoConfig {
    pub norm_adv_by_std: bool,
    pub adv_eps: f64,
    pub clip_low: f64,
    pub clip_high: f64,
    /// Only "low_var_kl" (k3) is implemented.
    pub kl_type: String,
    pub kl_coef: f64,
    pub entropy_coef: f64,
    /// γ in [0, 1]: scale advantages by n_s^(−γ) (mean 1), n_s the batch's
    /// trajectories of the same `data_source`. 1 gives each source (e.g.
    /// search-free and search-required rows) the same total weight; 0 is off.
    pub source_balance: f64,
    /// Drop groups whose rewards are all equal before the update.
    pub filter_equal_groups: bool,
    /// "token-mean" (every generated token weighs the same),
    /// "seq-mean-token-mean" (every trajectory does) or
    /// "seq-mean-token-sum-norm" (token sums over `rollout.max_response_tokens`).
    pub loss_agg: LossAgg,
    /// Passes over each rollout batch. With 1 and one mini-batch the update
    /// is on-policy and takes the old log-probs from its backward pass.
    pub ppo_epochs: usize,
    /// Trajectories per optimizer step (0: the whole batch).
    pub mini_batch: usize,
    /// Trajectories per forward/backward (gradient accumulation).
    pub micro_batch: usize,
}

impl Default for AlgoConfig {
    fn default() -> Self {
        Self {
            norm_adv_by_std: true,
            adv_eps: 1e-6,
            clip_low: 0.2,
            clip_high: 0.2,
            kl_type: "low_var_kl".into(),
            kl_coef: 0.001,
            entropy_coef: 0.0,
            source_balance: 0.0,
            filter_equal_groups: false,
            loss_agg: LossAgg::TokenMean,
            ppo_epochs: 1,
            mini_batch: 0,
            micro_batch: 4,
        }
    }
}

impl AlgoConfig {
    pub fn objective(&self) -> ObjectiveConfig {
        ObjectiveConfig {
            clip_low: self.clip_low,
            clip_high: self.clip_high,
            kl_coef: self.kl_coef,
            entropy_coef: self.entropy_coef,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActorConfig {
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    /// Max global gradient norm (0: no clipping).
    pub grad_clip: f64,
    pub warmup_steps: usize,
    pub decay: Decay,
    pub min_lr_ratio: f64,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            lr: 2e-6,
            weight_decay: 0.01,
            betas: [0.9, 0.999],
            eps: 1e-8,
            grad_clip: 1.0,
            warmup_steps: 0,
            decay: Decay::Constant,
            min_lr_ratio: 0.0,
        }
    }
}

impl ActorConfig {
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            betas: (self.betas[0], self.betas[1]),
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }
}

impl TrainConfig {
    /// Reads `path`, applies `key=value` overrides, and checks the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("config {} is not valid TOML", path.display()))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        Self::from_table(table)
            .map_err(|e| from_override(e, overrides))
            .with_context(|| format!("config {}", path.display()))
    }

    /// Builds a config from a TOML table; unknown keys and bad values are
    /// named.
    pub fn from_table(table: toml::Table) -> Result<Self> {
        // Unknown keys are found before deserialising: `deny_unknown_fields`
        // would stop at the first one without a suggestion.
        let known = known_keys();
        let mut unknown = Vec::new();
        unknown_keys("", &table, &known, &mut unknown);
        if !unknown.is_empty() {
            let msgs: Vec<String> = unknown
                .iter()
                .map(|k| match suggest(k, &known) {
                    Some(s) => format!("unknown key `{k}` (did you mean `{s}`?)"),
                    None => format!("unknown key `{k}`"),
                })
                .collect();
            bail!("{}", msgs.join("; "));
        }
        let cfg: Self = from_value("", toml::Value::Table(table))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// What GRPO needs beyond [`Self::validate`] (which `sft` and `eval`
    /// configs share): a group of one rollout has advantage 0 whatever its
    /// reward, so it would train on the KL term alone.
    pub fn validate_grpo(&self) -> Result<()> {
        self.validate()?;
        ensure!(
            self.rollout.n >= 2,
            "rollout.n = {}: GRPO compares each rollout with the others of its prompt's group, \
             and a group of one has advantage 0, so nothing would be learnt (set rollout.n ≥ 2)",
            self.rollout.n
        );
        let v = &self.val;
        ensure!(
            !v.keep_best || v.enabled(),
            "val.keep_best keeps the best validated checkpoint: set val.every (and data.val)"
        );
        if v.enabled() {
            ensure!(
                !self.data.val.is_empty(),
                "val.every = {} / val.before_train = {}: set data.val, the held-out split to validate on",
                v.every,
                v.before_train
            );
            ensure!(
                v.temperature >= 0.0 && v.temperature.is_finite(),
                "val.temperature must be ≥ 0 (0: greedy), got {}",
                v.temperature
            );
            ensure!(v.chunk >= 1, "val.chunk must be at least 1");
            ensure!(
                v.tool_timeout_s >= 1,
                "val.tool_timeout_s must be at least 1"
            );
        }
        Ok(())
    }

    /// Value checks that types alone cannot express.
    pub fn validate(&self) -> Result<()> {
        let mut errs = Vec::new();
        let mut check = |ok: bool, msg: String| {
            if !ok {
                errs.push(msg);
            }
        };
        let r = &self.rollout;
        check(
            r.n >= 1,
            format!("rollout.n must be at least 1 (got {})", r.n),
        );
        check(
            r.batch_prompts >= 1,
            format!(
                "rollout.batch_prompts must be at least 1 (got {})",
                r.batch_prompts
            ),
        );
        check(
            r.max_rounds >= 1,
            format!(
                "rollout.max_rounds must be at least 1 (got {})",
                r.max_rounds
            ),
        );
        check(
            r.max_turn_tokens >= 1,
            "rollout.max_turn_tokens must be at least 1".into(),
        );
        check(
            r.max_response_tokens >= r.max_turn_tokens.min(1),
            "rollout.max_response_tokens must be at least 1".into(),
        );
        check(
            r.temperature > 0.0,
            format!(
                "rollout.temperature must be > 0 for GRPO sampling (got {})",
                r.temperature
            ),
        );
        check(
            r.top_p > 0.0 && r.top_p <= 1.0,
            format!("rollout.top_p must be in (0, 1] (got {})", r.top_p),
        );
        let w = &self.reward;
        check(
            (0.0..=1.0).contains(&w.alpha),
            format!("reward.alpha must be in [0, 1] (got {})", w.alpha),
        );
        check(
            (0.0..=1.0).contains(&w.search_penalty),
            format!(
                "reward.search_penalty must be in [0, 1] (got {})",
                w.search_penalty
            ),
        );
        let a = &self.algo;
        check(
            a.clip_low >= 0.0 && a.clip_low < 1.0,
            format!("algo.clip_low must be in [0, 1) (got {})", a.clip_low),
        );
        check(
            a.clip_high >= 0.0,
            format!("algo.clip_high must be ≥ 0 (got {})", a.clip_high),
        );
        check(
            a.kl_type == "low_var_kl",
            format!(
                "algo.kl_type: only \"low_var_kl\" is implemented (got {:?})",
                a.kl_type
            ),
        );
        check(
            a.kl_coef >= 0.0,
            format!("algo.kl_coef must be ≥ 0 (got {})", a.kl_coef),
        );
        check(
            a.ppo_epochs >= 1,
            "algo.ppo_epochs must be at least 1".into(),
        );
        check(
            a.micro_batch >= 1,
            "algo.micro_batch must be at least 1".into(),
        );
        check(a.adv_eps > 0.0, "algo.adv_eps must be > 0".into());
        check(
            (0.0..=1.0).contains(&a.source_balance),
            format!(
                "algo.source_balance must be in [0, 1] (got {})",
                a.source_balance
            ),
        );
        let o = &self.actor;
        check(
            o.lr > 0.0 && o.lr.is_finite(),
            format!("actor.lr must be > 0 (got {})", o.lr),
        );
        check(
            o.betas.iter().all(|b| (0.0..1.0).contains(b)),
            format!("actor.betas must be in [0, 1) (got {:?})", o.betas),
        );
        check(o.grad_clip >= 0.0, "actor.grad_clip must be ≥ 0".into());
        check(
            (0.0..=1.0).contains(&o.min_lr_ratio),
            "actor.min_lr_ratio must be in [0, 1]".into(),
        );
        let m = &self.model;
        check(
            matches!(m.dtype.as_str(), "bf16" | "f16" | "f32"),
            format!(
                "model.dtype must be \"bf16\", \"f16\" or \"f32\" (got {:?})",
                m.dtype
            ),
        );
        check(
            m.device == "auto"
                || m.device == "cpu"
                || m.device == "cuda"
                || m.device
                    .strip_prefix("cuda:")
                    .is_some_and(|n| n.parse::<usize>().is_ok()),
            format!(
                "model.device must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\" (got {:?})",
                m.device
            ),
        );
        check(
            self.run.total_steps > 0 || self.run.epochs > 0,
            "set run.total_steps or run.epochs".into(),
        );
        if errs.is_empty() {
            Ok(())
        } else {
            bail!("{}", errs.join("; "))
        }
    }

    /// The resolved config as TOML, as written to the run dir.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

/// A value of the wrong type, named by its dotted key.
#[derive(Debug)]
struct BadValue {
    key: String,
    message: String,
}

impl std::fmt::Display for BadValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for BadValue {}

/// Deserialises a TOML value, naming the key of a bad value (under
/// `prefix`, e.g. `search`). The table's own text is gone by now, so a line
/// number would point nowhere.
pub fn from_value<T: serde::de::DeserializeOwned>(prefix: &str, value: toml::Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let key = match (prefix.is_empty(), path.as_str()) {
            (_, ".") => prefix.to_string(),
            (true, _) => path,
            (false, _) => format!("{prefix}.{path}"),
        };
        // toml adds "in `leaf`", which the key already says.
        let mut message = e.into_inner().message().trim_end().to_string();
        if let Some(better) = unknown_field_suggestion(&message) {
            let table = key.rsplit_once('.').map_or("", |(t, _)| t);
            let full = if table.is_empty() {
                better
            } else {
                format!("{table}.{better}")
            };
            message.push_str(&format!(" (did you mean `{full}`?)"));
        }
        BadValue { key, message }.into()
    })
}

/// The closest field to an unknown one, from serde's own message
/// ("unknown field `x`, expected one of `a`, `b`").
fn unknown_field_suggestion(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let known: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect();
    suggest(unknown, &known)
}

/// Says which override set a bad value, when one did.
pub fn from_override(e: anyhow::Error, overrides: &[String]) -> anyhow::Error {
    let Some(bad) = e.downcast_ref::<BadValue>() else {
        return e;
    };
    match overrides
        .iter()
        .rev()
        .find(|o| o.split_once('=').is_some_and(|(k, _)| k.trim() == bad.key))
    {
        Some(o) => e.context(format!("set by override `{o}`")),
        None => e,
    }
}

/// Applies `a.b.c=value`; the value is read as TOML (`8`, `1e-6`, `true`,
/// `[0.9, 0.95]`, `"x"`) or else taken as a bare string (`runs/x`).
pub fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .with_context(|| format!("override `{spec}` is not key=value"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        bail!("override `{spec}` has an empty key part");
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut cur = table;
    for (i, p) in parts.iter().enumerate() {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().with_context(|| {
            format!(
                "override `{spec}`: `{}` is not a table",
                parts[..=i].join(".")
            )
        })?;
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

/// Every key path of the default config (tables and leaves).
fn known_keys() -> Vec<String> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if let toml::Value::Table(inner) = v {
                walk(&path, inner, out);
            }
            out.push(path);
        }
    }
    let mut out = Vec::new();
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(TrainConfig::default()) {
        walk("", &t, &mut out);
    }
    out
}

/// Key paths of `table` that the config does not have; a wrong table is
/// named once, not its contents. `[search]` is free-form (the host reads it).
fn unknown_keys(prefix: &str, table: &toml::Table, known: &[String], out: &mut Vec<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if !known.contains(&path) {
            out.push(path);
        } else if let (toml::Value::Table(inner), false) = (v, path == "search") {
            unknown_keys(&path, inner, known, out);
        }
    }
}

/// The closest known key: same-table keys weigh most (a typo), then the
/// same leaf name in another table (a wrong section).
fn suggest(unknown: &str, known: &[String]) -> Option<String> {
    let leaf = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    known
        .iter()
        .map(|k| {
            let full = strsim::jaro_winkler(unknown, k);
            let leaf_score = if leaf(unknown) == leaf(k) { 0.95 } else { 0.0 };
            (full.max(leaf_score), k)
        })
        .filter(|(s, _)| *s >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, overrides: &[&str]) -> Result<TrainConfig> {
        let mut t: toml::Table = toml::from_str(text).unwrap();
        apply_override(&mut t, "model.path=models/m")?;
        for o in overrides {
            apply_override(&mut t, o)?;
        }
        TrainConfig::from_table(t)
    }

    #[test]
    fn overrides_set_typed_values() {
        let cfg = parse(
            "[rollout]\nn = 4\n[actor]\nlr = 2e-6\n",
            &[
                "rollout.n=8",
                "actor.lr=1e-6",
                "actor.betas=[0.9, 0.95]",
                "run.dir=runs/x",
                "rollout.mode=sync",
                "search.backend=\"fake\"",
            ],
        )
        .unwrap();
        assert_eq!(cfg.rollout.n, 8);
        assert_eq!(cfg.actor.lr, 1e-6);
        assert_eq!(cfg.actor.betas, [0.9, 0.95]);
        assert_eq!(cfg.run.dir, "runs/x");
        assert_eq!(cfg.rollout.mode, crate::rollout::RolloutMode::Sync);
        assert_eq!(cfg.search["backend"].as_str(), Some("fake"));
        // Untouched keys keep the paper's defaults.
        assert_eq!(cfg.reward.alpha, 0.1);
        assert_eq!(cfg.rollout.max_text_searches, 2);
    }

    #[test]
    fn unknown_keys_are_named_with_a_suggestion() {
        let err = parse("[actor]\nlrr = 1e-6\n", &[]).unwrap_err().to_string();
        assert!(
            err.contains("unknown key `actor.lrr` (did you mean `actor.lr`?)"),
            "{err}"
        );
        let err = parse("", &["rollout.kl_coef=0.1"]).unwrap_err().to_string();
        assert!(err.contains("did you mean `algo.kl_coef`"), "{err}");
        let err = parse("[rolout]\nn = 2\n", &[]).unwrap_err().to_string();
        assert!(
            err.contains("unknown key `rolout` (did you mean `rollout`?)"),
            "{err}"
        );
        let err = parse("", &["zzz.qqq=1"]).unwrap_err().to_string();
        assert_eq!(err, "unknown key `zzz`");
    }

    #[test]
    fn bad_values_are_named() {
        let err = format!("{:#}", parse("", &["actor.lr=fast"]).unwrap_err());
        assert!(
            err.contains("`actor.lr`: invalid type: string \"fast\", expected f64"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            from_override(
                parse("", &["actor.lr=fast"]).unwrap_err(),
                &["rollout.n=2".into(), "actor.lr=fast".into()]
            )
        );
        assert!(err.starts_with("set by override `actor.lr=fast`"), "{err}");
        let err = format!("{:#}", parse("[rollout]\nn = \"four\"", &[]).unwrap_err());
        assert!(err.contains("`rollout.n`: invalid type"), "{err}");
        let err = format!(
            "{:#}",
            from_override(parse("[rollout]\nn = \"four\"", &[]).unwrap_err(), &[])
        );
        assert!(!err.contains("override"), "{err}");
        let err = parse("", &["rollout.n=0", "reward.alpha=2"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rollout.n must be at least 1 (got 0)") && err.contains("reward.alpha"),
            "{err}"
        );
        // A group of one is a valid eval or SFT base, but not GRPO.
        let one = parse("", &["rollout.n=1"]).unwrap();
        let err = one.validate_grpo().unwrap_err().to_string();
        assert!(err.contains("rollout.n = 1: GRPO"), "{err}");
        parse("", &["rollout.n=2"])
            .unwrap()
            .validate_grpo()
            .unwrap();
        // Keeping the best validated checkpoint needs validations.
        let err = parse("", &["val.keep_best=true"])
            .unwrap()
            .validate_grpo()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("val.keep_best") && err.contains("val.every"),
            "{err}"
        );
        let err = parse("", &["algo.source_balance=1.5"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("algo.source_balance must be in [0, 1]"),
            "{err}"
        );
        let err = parse("", &["rollout.mode=fast"]).unwrap_err().to_string();
        assert!(err.contains("mode") && err.contains("async"), "{err}");
        assert!(apply_override(&mut toml::Table::new(), "rollout.n").is_err());
        let mut t = toml::Table::new();
        apply_override(&mut t, "a=1").unwrap();
        assert!(
            apply_override(&mut t, "a.b=1")
                .unwrap_err()
                .to_string()
                .contains("`a` is not a table")
        );
    }

    #[test]
    fn model_kinds() {
        let cfg = parse("", &["model.kind=bigram", "model.path="]).unwrap();
        assert_eq!(cfg.model.kind, ModelKind::Bigram);
        let err = parse("", &["model.kind=gpt"]).unwrap_err().to_string();
        assert!(err.contains("gpt") && err.contains("bigram"), "{err}");
    }

    #[test]
    fn resolved_config_round_trips() {
        let cfg = parse("", &["rollout.n=6", "model.lora.rank=16"]).unwrap();
        let again: TrainConfig = toml::from_str(&cfg.to_toml().unwrap()).unwrap();
        assert_eq!(cfg, again);
    }
}
