//! Workflow metrics as pure functions of per-question results: accuracy
//! (EM, SubEM, and the judge's when it ran), search ratios, tool calls, and
//! the same split by search-free and search-required questions.

use serde::{Deserialize, Serialize};

/// Whether a question needs search, as the data labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    SearchFree,
    SearchRequired,
    Unlabelled,
}

impl Category {
    /// From a row's `data_source` (e.g. `mmsr_demo/search_free`); sources
    /// without either label are unlabelled.
    pub fn from_data_source(source: &str) -> Self {
        let s = source.to_ascii_lowercase();
        if s.contains("search_free") {
            Category::SearchFree
        } else if s.contains("search_required") {
            Category::SearchRequired
        } else {
            Category::Unlabelled
        }
    }
}

/// What happened on one question.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QuestionResult {
    pub id: String,
    pub data_source: String,
    pub category: Option<Category>,
    pub question: String,
    /// The extracted final answer, if the model gave one.
    pub answer: Option<String>,
    /// Ground truth first, then candidate answers.
    pub golds: Vec<String>,
    pub exact_match: bool,
    pub sub_em: bool,
    /// The LLM judge's verdict, when judging ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<bool>,
    pub image_searches: usize,
    pub text_searches: usize,
    /// Searches that failed (the model was told to reason alone).
    #[serde(default)]
    pub tool_errors: usize,
    pub reward: f64,
    pub format: f64,
    /// The assistant turns, for reading what the model did.
    #[serde(default)]
    pub turns: Vec<String>,
    /// What each search showed it, images as `<image>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<String>,
}

impl QuestionResult {
    pub fn searched(&self) -> bool {
        self.image_searches + self.text_searches > 0
    }
}

/// Aggregates over a set of questions. Ratios are in [0, 1].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub questions: usize,
    pub accuracy_em: f64,
    pub accuracy_subem: f64,
    /// Share judged correct, over the questions the judge gave a verdict on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_judge: Option<f64>,
    /// Questions left without a verdict while others got one (the judge
    /// failed on them), so a share over few questions is not read as all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub judge_failed: usize,
    /// Share of questions with at least one image search.
    pub image_search_ratio: f64,
    /// Share of questions with at least one text search.
    pub text_search_ratio: f64,
    /// Share of questions with any search.
    pub search_ratio: f64,
    pub mean_tool_calls: f64,
    pub mean_reward: f64,
    pub mean_format: f64,
}

/// The metrics overall and per category.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    pub overall: Metrics,
    pub search_free: Metrics,
    pub search_required: Metrics,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn share<'a>(results: &[&'a QuestionResult], pred: impl Fn(&'a QuestionResult) -> bool) -> f64 {
    if results.is_empty() {
        return 0.0;
    }
    results.iter().filter(|r| pred(r)).count() as f64 / results.len() as f64
}

fn average<'a>(results: &[&'a QuestionResult], value: impl Fn(&'a QuestionResult) -> f64) -> f64 {
    if results.is_empty() {
        return 0.0;
    }
    results.iter().map(|r| value(r)).sum::<f64>() / results.len() as f64
}

/// Metrics of `results`; empty input gives zeros.
pub fn metrics(results: &[&QuestionResult]) -> Metrics {
    let judged: Vec<bool> = results.iter().filter_map(|r| r.judge).collect();
    Metrics {
        questions: results.len(),
        accuracy_em: share(results, |r| r.exact_match),
        accuracy_subem: share(results, |r| r.sub_em),
        accuracy_judge: (!judged.is_empty())
            .then(|| judged.iter().filter(|&&j| j).count() as f64 / judged.len() as f64),
        judge_failed: if judged.is_empty() {
            0
        } else {
            results.len() - judged.len()
        },
        image_search_ratio: share(results, |r| r.image_searches > 0),
        text_search_ratio: share(results, |r| r.text_searches > 0),
        search_ratio: share(results, QuestionResult::searched),
        mean_tool_calls: average(results, |r| (r.image_searches + r.text_searches) as f64),
        mean_reward: average(results, |r| r.reward),
        mean_format: average(results, |r| r.format),
    }
}

pub fn summarize(results: &[QuestionResult]) -> EvalSummary {
    let all: Vec<&QuestionResult> = results.iter().collect();
    let of = |c: Category| -> Vec<&QuestionResult> {
        results.iter().filter(|r| r.category == Some(c)).collect()
    };
    EvalSummary {
        overall: metrics(&all),
        search_free: metrics(&of(Category::SearchFree)),
        search_required: metrics(&of(Category::SearchRequired)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cat: Category, em: bool, sub: bool, img: usize, txt: usize) -> QuestionResult {
        QuestionResult {
            category: Some(cat),
            exact_match: em,
            sub_em: sub,
            image_searches: img,
            text_searches: txt,
            reward: if em { 1.0 } else { 0.1 },
            format: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn ratios_and_means_over_a_hand_counted_set() {
        let results = vec![
            r(Category::SearchFree, true, true, 0, 0),
            r(Category::SearchFree, false, true, 1, 0),
            r(Category::SearchRequired, true, true, 1, 1),
            r(Category::SearchRequired, false, false, 1, 2),
        ];
        let s = summarize(&results);
        assert_eq!(s.overall.questions, 4);
        assert_eq!(s.overall.accuracy_em, 0.5);
        assert_eq!(s.overall.accuracy_subem, 0.75);
        assert_eq!(s.overall.image_search_ratio, 0.75);
        assert_eq!(s.overall.text_search_ratio, 0.5);
        assert_eq!(s.overall.search_ratio, 0.75);
        assert_eq!(s.overall.mean_tool_calls, 6.0 / 4.0);
        assert!((s.overall.mean_reward - 0.55).abs() < 1e-12);
        assert_eq!(s.search_free.questions, 2);
        assert_eq!(s.search_free.accuracy_em, 0.5);
        assert_eq!(s.search_free.search_ratio, 0.5);
        assert_eq!(s.search_required.search_ratio, 1.0);
        assert_eq!(s.search_required.mean_tool_calls, 2.5);
        assert_eq!(s.overall.accuracy_judge, None);
    }

    #[test]
    fn judge_accuracy_counts_only_judged_questions() {
        let mut a = r(Category::SearchFree, false, false, 0, 0);
        a.judge = Some(true);
        let mut b = r(Category::SearchFree, false, false, 0, 0);
        b.judge = Some(false);
        let c = r(Category::SearchFree, true, true, 0, 0);
        let m = metrics(&[&a, &b, &c]);
        assert_eq!(m.accuracy_judge, Some(0.5));
        assert_eq!(
            m.judge_failed, 1,
            "c got no verdict: the judge failed on it"
        );
        assert_eq!(metrics(&[&c]).judge_failed, 0, "no judge at all");
    }

    #[test]
    fn empty_sets_are_zero_not_nan() {
        let s = summarize(&[]);
        assert_eq!(s.overall, Metrics::default());
        assert!(!s.search_required.accuracy_em.is_nan());
    }

    #[test]
    fn categories_come_from_the_data_source() {
        assert_eq!(
            Category::from_data_source("mmsr_demo/search_free"),
            Category::SearchFree
        );
        assert_eq!(
            Category::from_data_source("FVQA/Search_Required"),
            Category::SearchRequired
        );
        assert_eq!(
            Category::from_data_source("mmsearch_r1/fvqa_test"),
            Category::Unlabelled
        );
    }
}
