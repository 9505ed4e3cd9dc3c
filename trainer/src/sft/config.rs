//! The `[sft]` section; the rest of an SFT config is the trainer's own
//! sections: `[run]` (dir, seed, epochs or total_steps, progress),
//! `[model]`, `[data]` (train split; `max_samples` is the SFT data budget,
//! `shuffle` picks which samples with `run.seed`), `[rollout]` (prompts and
//! `max_rounds`, as the first turn shows them), `[actor]` (AdamW and the LR
//! schedule) and `[search]` (the tools that answer the scripted searches).

use crate::eval::config::{Section, load_command_config};
use crate::train::config::TrainConfig;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::train::PolicyInit;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftSection {
    /// The demo world (`world.json`) whose ideal searcher writes the turns.
    pub world: String,
    pub init: PolicyInit,
    /// Trajectories per optimizer step.
    pub batch_size: usize,
    /// Trajectories per forward/backward (gradient accumulation).
    pub micro_batch: usize,
    /// The trained model's dir (empty: `run.dir/model`).
    pub out: String,
    /// Searches in flight at once while the trajectories are built.
    pub search_concurrency: usize,
    /// A search that has not answered by then is an error observation.
    pub tool_timeout_s: u64,
    /// Leave out trajectories whose searches failed: their scripted turns
    /// would read results the model never saw.
    pub drop_failed_searches: bool,
    /// Leave out trajectories whose search results do not hold what the
    /// next scripted turn reads from them (the demo: the town's name in the
    /// image results, the answer in the text results). Always counted.
    pub drop_ungrounded: bool,
    /// Passes over each direct-answer trajectory per epoch. What a model
    /// knows takes more passes to learn than reading results does, and
    /// these turns are short.
    pub direct_repeat: usize,
    /// Also learn to predict the user and tool turns (every token but the
    /// image placeholders), not only the assistant's: search results and
    /// the repeated question hold many copies, the signal a small model
    /// needs to learn to copy a name out of the results.
    pub context_loss: bool,
    /// Extra passes over each direct-answer trajectory whose first turn is
    /// the direct workflow's prompt (answer, no search), so that eval's
    /// direct workflow is this model told not to search rather than a
    /// prompt it never saw.
    pub direct_prompt_repeat: usize,
    /// More datasets for SFT only, in `data.train`'s formats, taken whole
    /// after `data.train`'s budget (the demo: more photos of the known
    /// towns, `known_views.parquet`).
    pub extra_train: Vec<String>,
    /// Loss weight of the first two tokens of each assistant turn
    /// (`<reason>` and the word after it), where the demo's scripted turns
    /// commit to answering or searching; otherwise that choice is one token
    /// among a hundred. 1: a plain token mean.
    pub turn_open_weight: u8,
    /// β of a confidence penalty (Pereyra et al., 2017): the loss is the
    /// token-mean of NLL − β·entropy over the same mask. A warm start that
    /// ends sure of every token leaves GRPO groups whose rollouts hardly
    /// differ. 0: off.
    pub confidence_penalty: f64,
    /// Threads that share each step's micro-batches on the CPU, each with
    /// its own copy of the model and a share of torch's intra-op threads;
    /// gradients are summed in one thread's order, so the update is that of
    /// one thread with as many torch threads as each copy gets (MKL's
    /// results can depend on that count). Tiny models gain (torch's threads
    /// split their small matrix products poorly). 1: off; ignored on CUDA,
    /// with LoRA or gradient checkpointing.
    pub data_parallel: usize,
}

impl Default for SftSection {
    fn default() -> Self {
        Self {
            world: String::new(),
            init: PolicyInit::Load,
            batch_size: 16,
            micro_batch: 4,
            out: String::new(),
            search_concurrency: 16,
            tool_timeout_s: 300,
            drop_failed_searches: true,
            drop_ungrounded: false,
            direct_repeat: 1,
            context_loss: false,
            direct_prompt_repeat: 0,
            extra_train: Vec::new(),
            turn_open_weight: 1,
            confidence_penalty: 0.0,
            data_parallel: 1,
        }
    }
}

impl SftSection {
    pub fn out_dir(&self, base: &TrainConfig) -> PathBuf {
        if self.out.is_empty() {
            Path::new(&base.run.dir).join("model")
        } else {
            PathBuf::from(&self.out)
        }
    }
}

impl Section for SftSection {
    fn validate(&self, base: &TrainConfig) -> Result<()> {
        let mut errs = Vec::new();
        if self.world.is_empty() {
            errs.push(
                "set sft.world: the demo world.json whose scripts are the trajectories".into(),
            );
        }
        if base.data.train.is_empty() {
            errs.push("set data.train: the questions to warm-start on".to_string());
        }
        if base.model.path.is_empty() {
            errs.push("set model.path: the model dir to start from".to_string());
        }
        if self.batch_size == 0 {
            errs.push("sft.batch_size must be at least 1".to_string());
        }
        if self.micro_batch == 0 {
            errs.push("sft.micro_batch must be at least 1".to_string());
        }
        if self.data_parallel == 0 {
            errs.push("sft.data_parallel must be at least 1".to_string());
        }
        if self.turn_open_weight == 0 {
            errs.push("sft.turn_open_weight must be at least 1".to_string());
        }
        if !(self.confidence_penalty >= 0.0 && self.confidence_penalty.is_finite()) {
            errs.push(format!(
                "sft.confidence_penalty must be finite and >= 0, got {}",
                self.confidence_penalty
            ));
        }
        if self.direct_repeat == 0 {
            errs.push("sft.direct_repeat must be at least 1".to_string());
        }
        if self.search_concurrency == 0 {
            errs.push("sft.search_concurrency must be at least 1".to_string());
        }
        if self.tool_timeout_s == 0 {
            errs.push("sft.tool_timeout_s must be at least 1".to_string());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            bail!("{}", errs.join("; "))
        }
    }
}

/// Reads an SFT config: the trainer's sections and `[sft]`, with overrides.
pub fn load(path: &Path, overrides: &[String]) -> Result<(TrainConfig, SftSection)> {
    load_command_config(path, overrides, "sft")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::config::command_config_from_table;

    fn parse(text: &str, overrides: &[&str]) -> Result<(TrainConfig, SftSection)> {
        let table: toml::Table = toml::from_str(text).unwrap();
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        command_config_from_table(table, &o, "sft")
    }

    const OK: &str =
        "[model]\npath = \"m\"\n[data]\ntrain = \"t.parquet\"\n[sft]\nworld = \"w.json\"\n";

    #[test]
    fn defaults_and_overrides() {
        let (base, sft) = parse(
            OK,
            &["sft.init=random", "data.max_samples=12", "sft.batch_size=8"],
        )
        .unwrap();
        assert_eq!(
            (sft.init, sft.batch_size, base.data.max_samples),
            (PolicyInit::Random, 8, 12)
        );
        assert_eq!(sft.out_dir(&base), Path::new("runs/default/model"));
        let (base, sft) = parse(OK, &["sft.out=x/m", "run.dir=r"]).unwrap();
        assert_eq!(sft.out_dir(&base), Path::new("x/m"));
    }

    #[test]
    fn broken_configs_are_named() {
        let err = |text: &str, o: &[&str]| format!("{:#}", parse(text, o).unwrap_err());
        let e = err("", &[]);
        assert!(
            e.contains("sft.world") && e.contains("data.train") && e.contains("model.path"),
            "{e}"
        );
        let e = err(OK, &["sft.batch_size=0", "sft.micro_batch=0"]);
        assert!(
            e.contains("sft.batch_size") && e.contains("sft.micro_batch"),
            "{e}"
        );
        let e = err(OK, &["sft.confidence_penalty=-0.1"]);
        assert!(e.contains("sft.confidence_penalty"), "{e}");
        let e = err(OK, &["sft.init=pretrained"]);
        assert!(
            e.contains("`sft.init`: unknown variant `pretrained`"),
            "{e}"
        );
        let e = err(OK, &["sft.epochs=3"]);
        assert!(e.contains("`sft.epochs`: unknown field"), "{e}");
        let e = err(OK, &["actor.lr=0"]);
        assert!(e.contains("actor.lr must be > 0"), "{e}");
    }
}
