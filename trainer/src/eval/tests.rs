//! Workflow tests on a scripted policy and in-process fake tools: which
//! searches each workflow runs, what the model is shown, and the saved
//! report.

use super::config::{EvalSection, RagConfig};
use super::judge::{Judge, JudgeFuture, JudgeItem};
use super::workflow::{Outcome, Workflow, WorkflowRunner, question_result};
use crate::data::Sample;
use crate::demo::dataset::{ExtraInfo, SEARCH_FREE_SOURCE, SEARCH_REQUIRED_SOURCE, SeedRow};
use crate::policy::Transcript;
use crate::reward::{GoldAnswers, RewardConfig};
use crate::rollout::{EndReason, Prompts, RolloutConfig};
use crate::testkit::{ChatTokens, ScriptedPolicy};
use crate::tools::{FakeSearchTools, FakeToolCall, ObservationPart, ToolObservation};
use crate::train::config::TrainConfig;
use crate::train::{RunControl, StopPoint, Stopped};
use std::sync::Arc;
use std::time::Duration;

const IMG: &str = "<reason>I do not know it.</reason><search><img></search>";
const TXT: &str = "<reason>It is Vorlak.</reason><text_search>who founded Vorlak</text_search>";
const ANS: &str = "<reason>Known.</reason><answer>Ada Brun</answer>";

fn png() -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::new(4, 3)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A sample whose question carries its script: `img,txt,ans`.
fn sample(script: &str, source: &str) -> Sample {
    Sample {
        id: format!("t#{script}"),
        question: script.into(),
        images: vec![png()],
        image_url: Some("http://img/q.png".into()),
        gold: GoldAnswers {
            ground_truth: "Ada Brun".into(),
            candidates: vec!["Brun".into()],
        },
        data_source: source.into(),
    }
}

/// Scripts keyed by the question at the end of the first turn.
fn script(text: &str) -> Vec<String> {
    let q = text
        .rsplit("Question: ")
        .next()
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("");
    q.split(',')
        .map(|k| match k.trim() {
            "img" => IMG.to_string(),
            "txt" => TXT.to_string(),
            "ans" => ANS.to_string(),
            "wrong" => "<reason>Guess.</reason><answer>Brun Ada Carl</answer>".to_string(),
            "none" => "I have no idea".to_string(),
            other => other.to_string(),
        })
        .collect()
}

fn tools() -> Arc<FakeSearchTools> {
    Arc::new(FakeSearchTools::new(Duration::ZERO, |call| match call {
        FakeToolCall::Image { .. } => ToolObservation {
            parts: vec![
                ObservationPart::Text("1. Vorlak - Atlas ".into()),
                ObservationPart::Image(png()),
            ],
            error: None,
        },
        FakeToolCall::Text(q) => {
            ToolObservation::text(format!("Results for {q}: founded by Ada Brun."))
        }
    }))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn runner(
    tools: Arc<FakeSearchTools>,
    rt: &tokio::runtime::Runtime,
) -> WorkflowRunner<FakeSearchTools> {
    WorkflowRunner {
        rollout: RolloutConfig {
            temperature: 0.0,
            ..Default::default()
        },
        rag: RagConfig::default(),
        prompts: Arc::new(Prompts::builtin()),
        tools,
        handle: rt.handle().clone(),
        tool_timeout: Duration::from_secs(5),
        chunk: 2,
        seed: 0,
        on_progress: None,
    }
}

fn run(workflow: Workflow, scripts: &[&str]) -> (Vec<Outcome>, Vec<FakeToolCall>) {
    let rt = runtime();
    let tools = tools();
    let r = runner(Arc::clone(&tools), &rt);
    let samples: Vec<Sample> = scripts
        .iter()
        .map(|s| sample(s, SEARCH_REQUIRED_SOURCE))
        .collect();
    let out = r
        .run(&mut ScriptedPolicy::new(script), workflow, &samples)
        .unwrap();
    (out, tools.calls())
}

fn text(t: &Transcript) -> String {
    ChatTokens::decode(&t.tokens)
}

/// The decoded runs of mask-1 tokens: what training would learn from.
fn masked_runs(t: &Transcript) -> Vec<String> {
    let mut runs: Vec<Vec<i64>> = Vec::new();
    let mut prev = 0;
    for (i, &m) in t.response_mask.iter().enumerate() {
        if m == 1 {
            if prev == 0 {
                runs.push(Vec::new());
            }
            runs.last_mut().unwrap().push(t.tokens[i]);
        }
        prev = m;
    }
    runs.iter().map(|r| ChatTokens::decode(r)).collect()
}

#[test]
fn direct_never_runs_a_search() {
    let (out, calls) = run(
        Workflow::Direct,
        &["ans", "img,ans", "txt,txt", "img,img,ans", "none"],
    );
    assert!(calls.is_empty(), "direct ran searches: {calls:?}");
    let ends: Vec<EndReason> = out.iter().map(|o| o.trajectory.end).collect();
    assert_eq!(
        ends,
        vec![
            EndReason::Answered,
            EndReason::Answered,
            EndReason::SearchUnavailable,
            EndReason::SearchUnavailable,
            EndReason::NoAction
        ]
    );
    for o in &out {
        let t = &o.trajectory;
        assert_eq!((t.image_searches, t.text_searches), (0, 0));
        assert!(t.turns.len() <= 2);
        let shown = text(&t.transcript);
        let p = Prompts::builtin();
        assert!(shown.contains(&p.direct_first_turn(&t_question(&shown)).unwrap()));
        assert!(!shown.contains("<information>"), "{shown}");
    }
    // A search gets the search-unavailable turn, then the answer counts.
    let shown = text(&out[1].trajectory.transcript);
    assert!(
        shown.contains(&Prompts::builtin().search_unavailable("img,ans").unwrap()),
        "{shown}"
    );
    assert_eq!(out[1].trajectory.turn_texts(), vec![IMG, ANS]);
}

/// The question of a transcript built from [`sample`]: the text after the
/// last "Question: " of the first user turn.
fn t_question(shown: &str) -> String {
    shown
        .split("Question: ")
        .nth(1)
        .and_then(|s| s.split(['\n', '<']).next())
        .unwrap_or("")
        .to_string()
}

#[test]
fn rag_runs_image_then_text_search_even_when_the_policy_would_answer() {
    let (out, calls) = run(Workflow::Rag, &["ans,ans", "txt,ans"]);
    let question = |i: usize| ["ans,ans", "txt,ans"][i].to_string();
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, FakeToolCall::Image { .. }))
            .count(),
        2
    );
    let texts: Vec<&FakeToolCall> = calls
        .iter()
        .filter(|c| matches!(c, FakeToolCall::Text(_)))
        .collect();
    assert_eq!(texts.len(), 2);
    // The model's own query when it writes one, else the question.
    assert!(
        texts.contains(&&FakeToolCall::Text(question(0))),
        "{calls:?}"
    );
    assert!(
        texts.contains(&&FakeToolCall::Text("who founded Vorlak".into())),
        "{calls:?}"
    );

    let forced_text = format!(
        "<reason>{}</reason><text_search>{}</text_search>",
        RagConfig::default().text_reason,
        question(0)
    );
    let image_turn = RagConfig::default().image_turn;
    let a = &out[0];
    assert_eq!(
        a.discarded,
        vec![ANS.to_string()],
        "the early answer is set aside"
    );
    assert_eq!(
        a.trajectory.turn_texts(),
        vec![image_turn.as_str(), forced_text.as_str(), ANS]
    );
    let b = &out[1];
    assert!(b.discarded.is_empty());
    assert_eq!(
        b.trajectory.turn_texts(),
        vec![image_turn.as_str(), TXT, ANS]
    );
    for o in &out {
        let t = &o.trajectory;
        assert_eq!(
            (t.image_searches, t.text_searches, t.end),
            (1, 1, EndReason::Answered)
        );
        // The transcript is the conversation as kept: the set-aside turn is
        // not in it, each result block once, three assistant turns.
        let shown = text(&t.transcript);
        assert_eq!(shown.matches("<information>").count(), 2, "{shown}");
        let runs = masked_runs(&t.transcript);
        assert_eq!(runs, t.turn_texts(), "{shown}");
        assert_eq!(
            t.transcript.images.len(),
            2,
            "input image and the thumbnail"
        );
    }
    // What each search showed, for the report: the image results with their
    // thumbnail, then the text results of the query that ran.
    assert_eq!(
        out[1].trajectory.observations,
        [
            "1. Vorlak - Atlas <image>",
            "Results for who founded Vorlak: founded by Ada Brun."
        ]
    );
    assert_eq!(
        out[0].trajectory.observations[1],
        format!("Results for {}: founded by Ada Brun.", question(0))
    );
    assert!(masked_runs(&out[0].trajectory.transcript)[1].starts_with(&forced_text));
}

#[test]
fn on_demand_follows_the_policy() {
    let (out, calls) = run(Workflow::OnDemand, &["ans", "img,txt,ans", "txt,ans"]);
    assert_eq!(calls.len(), 3, "{calls:?}");
    let counts: Vec<(usize, usize)> = out
        .iter()
        .map(|o| (o.trajectory.image_searches, o.trajectory.text_searches))
        .collect();
    assert_eq!(counts, vec![(0, 0), (1, 1), (0, 1)]);
    assert_eq!(out[1].trajectory.turn_texts(), vec![IMG, TXT, ANS]);
    assert!(out.iter().all(|o| o.trajectory.end == EndReason::Answered));
    let shown: Vec<usize> = out
        .iter()
        .map(|o| o.trajectory.observations.len())
        .collect();
    assert_eq!(shown, [0, 2, 1], "one observation a search");
    assert_eq!(
        out[1].trajectory.observations[0],
        "1. Vorlak - Atlas <image>"
    );
}

#[test]
fn results_score_the_final_answer() {
    let (out, _) = run(Workflow::OnDemand, &["ans", "img,wrong", "none"]);
    let reward = RewardConfig::default();
    let samples = [
        sample("ans", SEARCH_FREE_SOURCE),
        sample("img,wrong", SEARCH_REQUIRED_SOURCE),
        sample("none", "other/source"),
    ];
    let r: Vec<_> = samples
        .iter()
        .zip(&out)
        .map(|(s, o)| question_result(s, o, &reward))
        .collect();
    assert_eq!((r[0].exact_match, r[0].sub_em), (true, true));
    assert!((r[0].reward - 1.0).abs() < 1e-12);
    // "Brun Ada Carl" holds the candidate "Brun": SubEM only.
    assert_eq!((r[1].exact_match, r[1].sub_em), (false, true));
    assert_eq!((r[1].image_searches, r[1].text_searches), (1, 0));
    assert_eq!(r[1].answer.as_deref(), Some("Brun Ada Carl"));
    assert_eq!(r[2].answer, None);
    assert_eq!(
        r.iter().map(|x| x.category).collect::<Vec<_>>(),
        vec![
            Some(super::Category::SearchFree),
            Some(super::Category::SearchRequired),
            Some(super::Category::Unlabelled)
        ]
    );
    assert_eq!(r[1].golds, vec!["Ada Brun", "Brun"]);
    assert_eq!(
        r[1].turns,
        vec![
            IMG.to_string(),
            "<reason>Guess.</reason><answer>Brun Ada Carl</answer>".into()
        ]
    );
    assert_eq!(r[1].observations, ["1. Vorlak - Atlas <image>"]);
    assert!(r[0].observations.is_empty());
}

/// Says CORRECT when the answer is exactly the ground truth.
struct ExactJudge;
impl Judge for ExactJudge {
    fn judge<'a>(&'a self, item: &'a JudgeItem) -> JudgeFuture<'a> {
        Box::pin(async move { Ok(item.answer == item.golds[0]) })
    }
}

/// ExactJudge that also reads what is on disk while it judges.
struct ReadsTheSavedReport {
    path: std::path::PathBuf,
    seen: std::sync::Mutex<Vec<Option<usize>>>,
}
impl Judge for ReadsTheSavedReport {
    fn judge<'a>(&'a self, item: &'a JudgeItem) -> JudgeFuture<'a> {
        let saved = super::EvalReport::load(&self.path)
            .ok()
            .map(|r| r.results.len());
        self.seen.lock().unwrap().push(saved);
        ExactJudge.judge(item)
    }
}

/// Four questions in a parquet file and a config whose `[eval]` reads
/// them, with `eval_extra` in that section.
fn four_question_eval(
    tmp: &std::path::Path,
    eval_extra: &str,
) -> (TrainConfig, EvalSection, std::path::PathBuf) {
    let rows: Vec<SeedRow> = ["ans", "img,ans", "img,wrong", "txt,ans"]
        .iter()
        .enumerate()
        .map(|(i, q)| SeedRow {
            prompt: vec![("user".into(), q.to_string())],
            images: vec![(png(), format!("q/{i}.png"))],
            ground_truth: "Ada Brun".into(),
            candidate_answers: vec![],
            data_source: if i == 0 {
                SEARCH_FREE_SOURCE
            } else {
                SEARCH_REQUIRED_SOURCE
            }
            .into(),
            image_urls: None,
            extra: ExtraInfo {
                id: format!("q{i}"),
                split: "test".into(),
                kind: "founder".into(),
                entity: "Vorlak".into(),
                search_required: i > 0,
            },
        })
        .collect();
    let data = tmp.join("test.parquet");
    crate::demo::dataset::write_parquet(&data, &rows).unwrap();
    let run_dir = tmp.join("run");
    let table: toml::Table = toml::from_str(&format!(
        "[run]\ndir = {:?}\nprogress = false\n[eval]\ndata = {:?}\n{eval_extra}\n",
        run_dir.display().to_string(),
        data.display().to_string()
    ))
    .unwrap();
    let (base, eval): (_, EvalSection) =
        super::config::command_config_from_table(table, &[], "eval").unwrap();
    (base, eval, run_dir)
}

#[test]
fn run_eval_saves_the_report_in_the_run_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, eval, run_dir) = four_question_eval(tmp.path(), "max_samples = 3");
    let rt = runtime();
    let label = super::label_for(&eval, Workflow::OnDemand, Some("sft-on-demand"));
    let judge = ReadsTheSavedReport {
        path: run_dir.join("eval/sft-on-demand.json"),
        seen: Default::default(),
    };
    let out = super::run_eval(
        &base,
        &eval,
        Workflow::OnDemand,
        &label,
        &mut ScriptedPolicy::new(script),
        tools(),
        Some(&judge),
        rt.handle(),
        RunControl::default(),
    )
    .unwrap();
    // The rollouts were on disk before the judge was asked.
    let seen = judge.seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|&n| n == Some(3)),
        "{seen:?}"
    );
    assert_eq!(out.path, run_dir.join("eval/sft-on-demand.json"));
    assert!(!run_dir.join("eval/sft-on-demand.json.tmp").exists());
    let saved = super::EvalReport::load(&out.path).unwrap();
    assert_eq!(saved, out.report);
    let s = &saved.summary;
    assert_eq!(s.overall.questions, 3, "eval.max_samples");
    assert!((s.overall.accuracy_em - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(s.overall.accuracy_judge, Some(2.0 / 3.0));
    assert_eq!(s.search_free.search_ratio, 0.0);
    assert_eq!(s.search_required.image_search_ratio, 1.0);
    assert_eq!(
        (saved.workflow.as_str(), saved.label.as_str()),
        ("on-demand", "sft-on-demand")
    );
    assert!(
        out.table
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("sft-on-demand"),
        "{}",
        out.table
    );
    assert_eq!(saved.judge.unwrap().judged, 3);

    // Labels are file names.
    let err = super::run_eval(
        &base,
        &eval,
        Workflow::Direct,
        "../x",
        &mut ScriptedPolicy::new(script),
        tools(),
        None,
        rt.handle(),
        RunControl::default(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("must be a file name"), "{err}");
    assert_eq!(super::label_for(&eval, Workflow::Rag, None), "rag");
}

#[test]
fn workflows_parse_by_name() {
    for w in Workflow::ALL {
        assert_eq!(w.name().parse::<Workflow>().unwrap(), w);
    }
    let err = "ondemand".parse::<Workflow>().unwrap_err().to_string();
    assert!(err.contains("direct, rag or on-demand"), "{err}");
}

#[test]
fn an_interrupted_eval_resumes_to_the_report_of_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, eval, run_dir) = four_question_eval(tmp.path(), "chunk = 1");
    let rt = runtime();
    let go = |label: &str, eval: &EvalSection, control: RunControl| {
        super::run_eval(
            &base,
            eval,
            Workflow::OnDemand,
            label,
            &mut ScriptedPolicy::new(script),
            tools(),
            None,
            rt.handle(),
            control,
        )
    };
    let whole = go("whole", &eval, RunControl::default()).unwrap().report;
    assert_eq!(whole.results.len(), 4);

    // Stopped from the start: one chunk of one question, then the stop.
    let stop = crate::train::StopRequest::default();
    stop.request();
    let err = go("cut", &eval, RunControl::default().with_stop(stop))
        .err()
        .unwrap();
    let stopped = err.downcast_ref::<Stopped>().expect("a Stopped error");
    let partial = run_dir.join("eval/cut.partial.jsonl");
    assert_eq!(stopped.at, StopPoint::Questions { done: 1, total: 4 });
    assert_eq!(stopped.checkpoint.as_ref(), Some(&partial));
    assert!(!run_dir.join("eval/cut.json").exists());
    assert_eq!(
        std::fs::read_to_string(&partial).unwrap().lines().count(),
        2
    );

    // Not without --resume; not under settings that compute otherwise.
    let msg = format!(
        "{:#}",
        go("cut", &eval, RunControl::default()).err().unwrap()
    );
    assert!(msg.contains("pass --resume"), "{msg}");
    let other = EvalSection {
        seed: eval.seed + 1,
        ..eval.clone()
    };
    let msg = format!(
        "{:#}",
        go("cut", &other, RunControl::new(true)).err().unwrap()
    );
    assert!(msg.contains("other settings"), "{msg}");

    let resumed = go("cut", &eval, RunControl::new(true)).unwrap().report;
    assert_eq!(resumed.results, whole.results);
    assert_eq!(resumed.summary, whole.summary);
    assert!(!partial.exists(), "the report replaces the partial file");
    // A finished eval is not resumed (run again, it would be redone).
    let msg = format!(
        "{:#}",
        go("cut", &eval, RunControl::new(true)).err().unwrap()
    );
    assert!(msg.contains("is a finished eval"), "{msg}");
}
