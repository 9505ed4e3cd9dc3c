//! The trainer's validation (`[val]`) as an eval: the on-demand workflow,
//! greedy unless `val.temperature` says otherwise, over `data.val`, scored
//! as `mmsr-host eval` scores it.

use super::EvalReport;
use super::config::RagConfig;
use super::metrics::{QuestionResult, metrics};
use super::workflow::{Workflow, WorkflowRunner, question_result};
use crate::data::{self, Sample};
use crate::policy::Policy;
use crate::reward::RewardConfig;
use crate::rollout::{Prompts, RolloutConfig};
use crate::tools::SearchTools;
use crate::train::metrics::{SearchMetrics, SourceMetrics};
use crate::train::{TrainConfig, ValMetrics, Validator, val_results_file};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

pub struct HeldOut<T: SearchTools + 'static> {
    samples: Vec<Sample>,
    runner: WorkflowRunner<T>,
    reward: RewardConfig,
    /// The run dir to keep each validation's report in (`val.save_results`).
    save_to: Option<PathBuf>,
    model: String,
    dataset: String,
}

impl<T: SearchTools + 'static> HeldOut<T> {
    /// `None` when `[val]` is off. Loads `data.val` now, so a bad split is
    /// named before a model is loaded.
    pub fn from_config(cfg: &TrainConfig, tools: Arc<T>, handle: Handle) -> Result<Option<Self>> {
        let v = &cfg.val;
        if !v.enabled() {
            return Ok(None);
        }
        let samples = data::spread(
            data::load(Path::new(&cfg.data.val), &cfg.data.load_options())
                .with_context(|| format!("data.val = {:?}", cfg.data.val))?
                .samples,
            v.max_samples,
        );
        anyhow::ensure!(
            !samples.is_empty(),
            "data.val = {:?} has no valid rows",
            cfg.data.val
        );
        let prompts =
            Arc::new(Prompts::load(&cfg.rollout.prompts_dir).context("rollout.prompts_dir")?);
        let runner = WorkflowRunner {
            // One answer a question, greedy by default, as eval reports.
            rollout: RolloutConfig {
                n: 1,
                temperature: v.temperature,
                top_p: 1.0,
                top_k: 0,
                ..cfg.rollout.clone()
            },
            rag: RagConfig::default(),
            prompts,
            tools,
            handle,
            tool_timeout: Duration::from_secs(v.tool_timeout_s),
            chunk: v.chunk,
            seed: cfg.run.seed,
            on_progress: None,
        };
        Ok(Some(Self {
            samples,
            runner,
            reward: cfg.reward.clone(),
            save_to: v.save_results.then(|| PathBuf::from(&cfg.run.dir)),
            model: cfg.model.path.clone(),
            dataset: cfg.data.val.clone(),
        }))
    }
}

impl<P: Policy, T: SearchTools + 'static> Validator<P> for HeldOut<T> {
    fn validate(&mut self, policy: &mut P, step: usize) -> Result<ValMetrics> {
        let outcomes = self.runner.run(policy, Workflow::OnDemand, &self.samples)?;
        let results: Vec<QuestionResult> = self
            .samples
            .iter()
            .zip(&outcomes)
            .map(|(s, o)| question_result(s, o, &self.reward))
            .collect();
        let m = val_metrics(&results);
        if let Some(dir) = &self.save_to {
            let report = EvalReport::new(
                &format!("val-step-{step}"),
                Workflow::OnDemand.name(),
                &self.model,
                &self.dataset,
                results,
            );
            // The answers are for reading; the metrics line still counts.
            if let Err(e) = report.save(&val_results_file(dir, step)) {
                tracing::warn!(step, "{e:#}; this validation's answers are not kept");
            }
        }
        Ok(m)
    }
}

/// The validation line of a set of results (step and time left to the
/// trainer): eval's metrics, overall and per `data_source`, under the
/// training metrics' names.
pub fn val_metrics(results: &[QuestionResult]) -> ValMetrics {
    let mut groups: BTreeMap<&str, Vec<&QuestionResult>> = BTreeMap::new();
    for r in results {
        groups.entry(&r.data_source).or_default().push(r);
    }
    let by_source = groups
        .into_iter()
        .map(|(source, rs)| {
            let m = metrics(&rs);
            let line = SourceMetrics {
                trajectories: m.questions,
                reward: m.mean_reward,
                accuracy: m.accuracy_em,
                search_ratio: m.search_ratio,
            };
            (source.to_string(), line)
        })
        .collect();
    let m = metrics(&results.iter().collect::<Vec<_>>());
    ValMetrics {
        step: 0,
        questions: m.questions,
        reward: m.mean_reward,
        accuracy: m.accuracy_em,
        accuracy_subem: m.accuracy_subem,
        format: m.mean_format,
        search: SearchMetrics {
            ratio: m.search_ratio,
            image_ratio: m.image_search_ratio,
            text_ratio: m.text_search_ratio,
            per_trajectory: m.mean_tool_calls,
        },
        by_source,
        secs: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(source: &str, em: bool, image: usize, text: usize, reward: f64) -> QuestionResult {
        QuestionResult {
            data_source: source.into(),
            exact_match: em,
            sub_em: em || text > 0,
            image_searches: image,
            text_searches: text,
            reward,
            format: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn validation_lines_average_per_question_and_per_source() {
        let m = val_metrics(&[
            result("free", true, 0, 0, 1.0),
            result("free", false, 1, 0, 0.1),
            result("req", true, 1, 2, 0.91),
            result("req", false, 0, 1, 0.1),
        ]);
        assert_eq!(m.questions, 4);
        assert!((m.reward - 2.11 / 4.0).abs() < 1e-12);
        assert_eq!((m.accuracy, m.accuracy_subem, m.format), (0.5, 0.75, 1.0));
        assert_eq!(m.search.ratio, 0.75);
        assert_eq!((m.search.image_ratio, m.search.text_ratio), (0.5, 0.5));
        assert_eq!(m.search.per_trajectory, 1.25);
        let free = &m.by_source["free"];
        assert_eq!(
            (free.trajectories, free.accuracy, free.search_ratio),
            (2, 0.5, 0.5)
        );
        let req = &m.by_source["req"];
        assert_eq!((req.accuracy, req.search_ratio), (0.5, 1.0));
        assert!((req.reward - 0.505).abs() < 1e-12);
        assert_eq!(val_metrics(&[]).questions, 0);
    }
}
