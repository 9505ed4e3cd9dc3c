use super::*;
use crate::eval::{Category, QuestionResult};

fn fake_run(dir: &Path) {
    let rl = dir.join("rl");
    std::fs::create_dir_all(&rl).unwrap();
    let mut lines = String::new();
    for step in 0..30 {
        let t = step as f64 / 30.0;
        lines.push_str(&format!(
            "{{\"step\": {step}, \"reward\": {}, \"accuracy\": {}, \"image_search_ratio\": {}, \"text_search_ratio\": {}}}\n",
            0.3 + 0.4 * t,
            0.2 + 0.5 * t,
            0.9 - 0.3 * t,
            0.6 - 0.2 * t
        ));
    }
    std::fs::write(rl.join(METRICS_FILE), lines).unwrap();
    let sft = dir.join("sft");
    std::fs::create_dir_all(&sft).unwrap();
    std::fs::write(
        sft.join(METRICS_FILE),
        "{\"step\": 0, \"loss\": 3.0}\n{\"step\": 1, \"loss\": 2.0}\n",
    )
    .unwrap();
    let mk = |cat, em, img| QuestionResult {
        id: format!("q{em}{img}"),
        category: Some(cat),
        exact_match: em,
        sub_em: em,
        image_searches: img,
        turns: vec!["<reason>r</reason><answer>a</answer>".into()],
        ..Default::default()
    };
    for (name, label) in [("1-direct", "direct"), ("2-rl", "rl (on-demand)")] {
        let results = vec![
            mk(Category::SearchFree, true, 0),
            mk(Category::SearchRequired, label != "direct", 1),
        ];
        EvalReport::new(label, "on-demand", "m", "test.parquet", results)
            .save(&dir.join(EVAL_DIR).join(format!("{name}.json")))
            .unwrap();
    }
}

/// Rows near the top of a PNG hold the title: dark pixels there mean the
/// bundled font rendered text.
fn has_text_in_title_band(png: &Path) -> bool {
    let img = image::open(png).unwrap().to_rgb8();
    (0..24).any(|y| (0..img.width()).any(|x| img.get_pixel(x, y).0.iter().all(|&c| c < 100)))
}

#[test]
fn writes_pngs_svgs_and_one_html_page() {
    let tmp = tempfile::tempdir().unwrap();
    fake_run(tmp.path());
    let out = write_report(tmp.path()).unwrap();
    for name in [
        "training-rl.png",
        "training-rl.svg",
        "training-sft.png",
        "eval.png",
        "eval.svg",
        "index.html",
    ] {
        assert!(out.dir.join(name).is_file(), "{name} missing");
    }
    let png = image::open(out.dir.join("training-rl.png")).unwrap();
    assert_eq!((png.width(), png.height()), plots::TRAINING_SIZE);
    assert!(has_text_in_title_band(&out.dir.join("training-rl.png")));
    assert!(has_text_in_title_band(&out.dir.join("eval.png")));
    let svg = std::fs::read_to_string(out.dir.join("training-rl.svg")).unwrap();
    assert!(svg.contains("search ratio") && svg.contains("image search"));
    let html = std::fs::read_to_string(&out.html).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        3,
        "two training figures and the eval figure inline"
    );
    assert!(html.contains("<td>rl (on-demand)</td>"));
    assert!(
        html.find("direct").unwrap() < html.find("rl (on-demand)").unwrap(),
        "file-name order"
    );
}

#[test]
fn an_empty_run_dir_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let err = write_report(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains(&tmp.path().display().to_string()) && err.contains("nothing to report"),
        "{err}"
    );
}

#[test]
fn a_corrupt_eval_report_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join(EVAL_DIR)).unwrap();
    std::fs::write(tmp.path().join(EVAL_DIR).join("bad.json"), "{\"label\": 1").unwrap();
    let err = format!("{:#}", write_report(tmp.path()).unwrap_err());
    assert!(err.contains("bad.json"), "{err}");
}

#[test]
fn a_broken_metrics_log_is_named_and_leaves_no_report_dir() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(METRICS_FILE), "{\"step\": 1}\nnot json\n").unwrap();
    let err = format!("{:#}", write_report(tmp.path()).unwrap_err());
    assert!(
        err.contains(METRICS_FILE) && err.contains("line 2"),
        "{err}"
    );
    assert!(!tmp.path().join(REPORT_DIR).exists());
}

#[test]
fn a_runs_validations_get_their_own_figure() {
    let tmp = tempfile::tempdir().unwrap();
    fake_run(tmp.path());
    let rl = tmp.path().join("rl");
    let lines: String = (0..4)
        .map(|k| {
            format!(
                "{{\"step\": {}, \"reward\": {}, \"accuracy\": 0.5, \"search\": {{\"ratio\": 0.5}}, \"by_source\": {{\"free\": {{\"search_ratio\": 0.1}}, \"req\": {{\"search_ratio\": 0.9}}}}}}\n",
                10 * k,
                0.2 * k as f64
            )
        })
        .collect();
    std::fs::write(rl.join(VAL_METRICS_FILE), lines).unwrap();
    let out = write_report(tmp.path()).unwrap();
    let svg = std::fs::read_to_string(out.dir.join("validation-rl.svg")).unwrap();
    assert!(svg.contains("held-out validation") && svg.contains("search ratio by data source"));
    assert!(has_text_in_title_band(&out.dir.join("validation-rl.png")));
    let html = std::fs::read_to_string(&out.html).unwrap();
    assert_eq!(html.matches("<svg").count(), 4, "the validation figure too");
    assert!(html.contains("4 validations (step 0–30)"), "{html}");
    assert!(!html.contains("val-step"), "no validation reports kept");

    // Kept validation reports: the latest one's examples are on the page.
    for step in [3usize, 30, 10] {
        let q = QuestionResult {
            id: format!("v{step}"),
            question: format!("asked at step {step}"),
            turns: vec!["<answer>a</answer>".into()],
            ..Default::default()
        };
        let r = EvalReport::new(
            &format!("val-step-{step}"),
            "on-demand",
            "m",
            "val.parquet",
            vec![q],
        );
        r.save(
            &rl.join(VAL_RESULTS_DIR)
                .join(format!("step-{step:08}.json")),
        )
        .unwrap();
    }
    std::fs::remove_dir_all(&out.dir).unwrap();
    let out = write_report(tmp.path()).unwrap();
    let html = std::fs::read_to_string(&out.html).unwrap();
    assert!(html.contains("rl: val-step-30"), "{html}");
    assert!(html.contains("asked at step 30"), "{html}");
    assert!(!html.contains("asked at step 10") && !html.contains("asked at step 3<"));
    // A broken one is named.
    std::fs::write(rl.join(VAL_RESULTS_DIR).join("step-00000040.json"), "{").unwrap();
    std::fs::remove_dir_all(&out.dir).unwrap();
    let err = format!("{:#}", write_report(tmp.path()).unwrap_err());
    assert!(err.contains("step-00000040.json"), "{err}");
    std::fs::remove_dir_all(rl.join(VAL_RESULTS_DIR)).unwrap();
    let out = write_report(tmp.path()).unwrap();

    // A broken validation log is named, and no report is left half-written.
    std::fs::remove_dir_all(&out.dir).unwrap();
    std::fs::write(rl.join(VAL_METRICS_FILE), "{\"step\": 0, \"rew").unwrap();
    let err = format!("{:#}", write_report(tmp.path()).unwrap_err());
    assert!(err.contains("val_metrics.jsonl line 1"), "{err}");
    assert!(!out.dir.exists());
}
