//! `mmsr-host demo`, the chain `make demo` runs: the plumbing on a quick
//! world, every stage, and `mmsr-host evidence` over runs. The evidence on
//! the default chain is `demo_evidence.rs`.

mod demo_run;

use demo_run::{demo, evidence, repo};
use serde_json::Value;
use std::process::Command;

#[test]
fn quick_chain_runs_every_stage_and_writes_the_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let (stdout, checks) = demo(tmp.path(), 3, &["--quick"]);
    for stage in [
        "demo-data",
        "sft",
        "train",
        "export",
        "eval",
        "report",
        "evidence",
    ] {
        assert!(
            stdout.contains(&format!("] {stage}")),
            "no {stage} stage:\n{stdout}"
        );
    }
    assert_eq!(checks.len(), 4, "{checks:?}");
    let runs = tmp.path().join("runs");
    for label in ["sft-on-demand", "rl-on-demand", "rl-rag", "rl-direct"] {
        assert!(runs.join(format!("eval/{label}.json")).is_file(), "{label}");
    }
    assert!(runs.join("report/index.html").is_file());
    assert!(runs.join("rl/model/config.json").is_file());
    // train.toml's [val] on the test split: before the first step and after the last.
    let vals = std::fs::read_to_string(runs.join("rl/val_metrics.jsonl")).unwrap();
    let steps: Vec<u64> = vals
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, [0, 2]);
    assert!(runs.join("report/validation-rl.svg").is_file());
    // train.toml keeps the best validated checkpoint, and `train` says which.
    let best = mmsr_trainer::train::checkpoint::best(&runs.join("rl/checkpoints"))
        .unwrap()
        .unwrap()
        .0;
    assert!(
        stdout.contains(&format!("best validation: step {}, reward", best.step)),
        "{stdout}"
    );
    // What the model wrote and was shown, through the real wasm tools: one
    // observation per search, in the step's rollout log, each kept
    // validation report and the eval reports.
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(runs.join("rl/rollouts/step-00000002.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(rows.len(), 4, "2 prompts × 2 rollouts");
    let count = |v: &serde_json::Value, key: &str| v[key].as_u64().unwrap() as usize;
    let len = |v: &serde_json::Value| v.as_array().map_or(0, Vec::len);
    for r in &rows {
        let searches = count(r, "image_searches") + count(r, "text_searches");
        assert_eq!(len(&r["observations"]), searches, "{r}");
        assert!(len(&r["turns"]) > 0 && r["golds"].as_array().is_some_and(|g| !g.is_empty()));
    }
    let reports = [
        runs.join("rl/val/step-00000000.json"),
        runs.join("rl/val/step-00000002.json"),
        runs.join("eval/rl-rag.json"),
    ];
    for path in &reports {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for q in report["results"].as_array().unwrap() {
            let searches = count(q, "image_searches") + count(q, "text_searches");
            assert_eq!(len(&q["observations"]), searches, "{}: {q}", path.display());
        }
    }
    // The RAG workflow searches on every question: the image results show
    // their thumbnails, the text results their pages.
    let rag: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&reports[2]).unwrap()).unwrap();
    for q in rag["results"].as_array().unwrap() {
        let shown = &q["observations"];
        assert!(shown[0].as_str().unwrap().contains("<image>"), "{q}");
        assert!(
            shown[1].as_str().unwrap().contains("Text search results"),
            "{q}"
        );
    }
    // `evidence` over runs: the same run twice has no noise; a dir without
    // a demo's evidence is named.
    let out = evidence(&[runs.clone(), runs.clone()]);
    let over: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(over.len(), 4);
    assert!(over.iter().all(|c| c["noise"] == 0.0 && c["margin"] == 0.0));
    let out = evidence(&[runs.clone(), tmp.path().join("world")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("world/evidence.json: no demo evidence here"),
        "{err}"
    );
    // The chain replaces its own runs dir, and refuses one it did not make.
    demo(tmp.path(), 3, &["--quick"]);
    let other = tmp.path().join("other");
    std::fs::create_dir_all(other.join("runs")).unwrap();
    std::fs::write(other.join("runs/notes.txt"), "mine").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mmsr-host"))
        .current_dir(repo())
        .args(["demo", "--quick", "--world"])
        .arg(other.join("world"))
        .arg("--runs")
        .arg(other.join("runs"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no demo run"));
    assert!(other.join("runs/notes.txt").is_file(), "nothing is lost");
}
