//! Datasets load through the trainer's loader: parquet written by pyarrow in
//! the seed's exact layout, and JSONL with an image folder.

use mmsr_trainer::data::{BadRowPolicy, LoadOptions, inspect, load};
use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> PathBuf {
    std::env::var_os("MMSR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

fn seed_parquet(dir: &Path) -> PathBuf {
    let out = dir.join("train.parquet");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/make_seed_parquet.py");
    let status = Command::new(python())
        .arg(&script)
        .arg(&out)
        .status()
        .expect("run python");
    assert!(status.success(), "make_seed_parquet.py failed");
    out
}

#[test]
fn seed_parquet_loads_and_names_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = seed_parquet(dir.path());
    let ds = inspect(&path, &LoadOptions::default()).unwrap();
    assert_eq!((ds.report.rows, ds.report.valid), (7, 3));
    let s = &ds.samples[0];
    assert_eq!(s.question, "What is the name of this building?");
    assert_eq!(s.gold.ground_truth, "Eiffel Tower");
    assert_eq!(s.gold.candidates, vec!["La tour Eiffel"]);
    assert_eq!(s.image_url.as_deref(), Some("https://example.org/e.jpg"));
    assert_eq!(s.data_source, "mmsearch_r1/infoseek_train_split");
    assert_eq!(
        &s.images[0][..2],
        &[0xFF, 0xD8],
        "JPEG bytes kept as stored"
    );
    assert_eq!(s.id, "train.parquet#0");
    assert!(ds.samples[1].gold.candidates.is_empty() && ds.samples[1].image_url.is_none());
    assert_eq!(ds.samples[2].gold.candidates, Vec::<String>::new());

    let bad: Vec<(usize, &str)> = ds
        .report
        .bad
        .iter()
        .map(|b| (b.row, b.reason.as_str()))
        .collect();
    assert_eq!(bad.len(), 4, "{bad:?}");
    assert!(
        bad[0].0 == 3 && bad[0].1.contains("images[0]: not an image"),
        "{bad:?}"
    );
    assert!(
        bad[1].0 == 4 && bad[1].1.contains("no user message with a question"),
        "{bad:?}"
    );
    assert!(
        bad[2].0 == 5 && bad[2].1.contains("candidate_answers is not JSON"),
        "{bad:?}"
    );
    assert!(
        bad[3].0 == 6 && bad[3].1.contains("reward_model is null"),
        "{bad:?}"
    );

    let err = load(&path, &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("train.parquet row 3") && err.contains("4 bad row"),
        "{err}"
    );
    let skipped = load(
        &path,
        &LoadOptions {
            on_bad_row: BadRowPolicy::Skip,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(skipped.samples.len(), 3);
}

#[test]
fn missing_column_and_non_parquet_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"definitely not parquet").unwrap();
    let err = format!(
        "{:#}",
        inspect(&junk, &LoadOptions::default()).err().unwrap()
    );
    assert!(err.contains("junk.parquet is not a parquet file"), "{err}");

    let path = dir.path().join("cols.parquet");
    let code = format!(
        "import pyarrow as pa, pyarrow.parquet as pq; pq.write_table(pa.table({{'prompt': [[{{'role':'user','content':'q'}}]], 'images': [[]]}}), r'{}')",
        path.display()
    );
    assert!(
        Command::new(python())
            .args(["-c", &code])
            .status()
            .unwrap()
            .success()
    );
    let err = inspect(&path, &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing column `reward_model`"), "{err}");
}

#[test]
fn jsonl_with_image_folder() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    let mut png = Vec::new();
    image::RgbImage::new(8, 8)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(imgs.join("a.png"), &png).unwrap();
    std::fs::write(imgs.join("broken.png"), b"\x89PNG\r\n\x1a\nxx").unwrap();
    let mut thin = Vec::new();
    image::RgbImage::new(300, 1)
        .write_to(
            &mut std::io::Cursor::new(&mut thin),
            image::ImageFormat::Png,
        )
        .unwrap();
    std::fs::write(imgs.join("thin.png"), &thin).unwrap();
    std::fs::write(dir.path().join("outside.png"), &png).unwrap();
    let path = dir.path().join("eval.jsonl");
    let mut text = [
        r#"{"question": "What is it?", "image": "a.png", "answer": "cat", "candidate_answers": ["kitten"]}"#,
        r#"{"question": "Q", "image": "missing.png", "answer": "x"}"#,
        r#"{"question": "Q", "image": "broken.png", "answer": "x"}"#,
        r#"{"question": "Q", "images": ["a.png"], "candidate_answers": "[\"y\"]"}"#,
        "{not json",
        "",
        r#"{"question": "Q2", "images": ["a.png", "a.png"], "ground_truth": "dog", "candidate_answers": "[\"puppy\"]", "image_url": "http://x/y.png"}"#,
        // What the rollout would refuse is refused here, where the row is known.
        r#"{"question": "Q", "image": "thin.png", "answer": "x"}"#,
        r#"{"question": "Q", "image": "../outside.png", "answer": "x"}"#,
        r#"{"question": "Q", "image": "/dev/zero", "answer": "x"}"#,
        r#"{"question": "What is <|image_pad|>?", "image": "a.png", "answer": "x"}"#,
    ]
    .join("\n")
    .into_bytes();
    // A line that is not UTF-8 is one bad row; the rows after it still load.
    text.extend_from_slice(b"\n{\"question\": \"\xff\"}\n");
    text.extend_from_slice(br#"{"question": "Q3", "image": "a.png", "answer": "z"}"#);
    std::fs::write(&path, text).unwrap();
    let opts = LoadOptions {
        image_dir: Some(imgs),
        ..Default::default()
    };
    let ds = inspect(&path, &opts).unwrap();
    assert_eq!((ds.report.rows, ds.report.valid), (12, 3));
    assert_eq!(ds.samples[2].id, "eval.jsonl#12");
    assert_eq!(ds.samples[0].gold.candidates, vec!["kitten"]);
    assert_eq!(ds.samples[1].images.len(), 2);
    assert_eq!(ds.samples[1].id, "eval.jsonl#6");
    assert_eq!(ds.samples[1].image_url.as_deref(), Some("http://x/y.png"));
    let reasons: Vec<String> = ds
        .report
        .bad
        .iter()
        .map(|b| format!("{}: {}", b.row, b.reason))
        .collect();
    assert!(
        reasons[0].starts_with("1: cannot read image") && reasons[0].contains("missing.png"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("2: broken.png: truncated image"),
        "{reasons:?}"
    );
    assert!(reasons[2].starts_with("3: missing `answer`"), "{reasons:?}");
    assert!(reasons[3].starts_with("4: not JSON"), "{reasons:?}");
    assert!(
        reasons[4].starts_with("7: thin.png: image 300x1: aspect ratio 300.0 is above 200"),
        "{reasons:?}"
    );
    for (r, name) in [(5, "8: image ../outside.png"), (6, "9: image /dev/zero")] {
        assert!(
            reasons[r].starts_with(name) && reasons[r].contains("is outside the image folder"),
            "{reasons:?}"
        );
    }
    assert!(
        reasons[7].starts_with("10: the question spells the special token \"<|image_pad|>\""),
        "{reasons:?}"
    );
    assert!(reasons[8].starts_with("11: not UTF-8"), "{reasons:?}");
}

/// The demo's writer (parquet's column writer, no Arrow) must give pyarrow
/// the seed's schema and values, as veRL's loaders read them.
#[test]
fn demo_parquet_reads_in_pyarrow_as_the_seed_schema() {
    use mmsr_trainer::demo::dataset::{ExtraInfo, SeedRow, write_parquet};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.parquet");
    let row = |i: usize, urls: Option<Vec<String>>| SeedRow {
        prompt: vec![("user".into(), format!("<image>question {i}"))],
        images: vec![(vec![0xff, 0xd8, i as u8], format!("queries/{i}.jpg"))],
        ground_truth: format!("answer {i}"),
        candidate_answers: vec!["alt".into()],
        data_source: "mmsr_demo/search_free".into(),
        image_urls: urls,
        extra: ExtraInfo {
            id: format!("q{i}"),
            split: "test".into(),
            kind: "fact".into(),
            entity: "Vorlak".into(),
            search_required: i == 1,
        },
    };
    write_parquet(
        &path,
        &[row(0, Some(vec!["http://h/a.jpg".into()])), row(1, None)],
    )
    .unwrap();
    let code = r#"
import json, sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
print(json.dumps({"schema": {f.name: str(f.type) for f in t.schema},
                  "rows": t.to_pylist()}, default=lambda b: list(b)))
"#;
    let out = Command::new(python())
        .args(["-c", code])
        .arg(&path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema = &v["schema"];
    assert_eq!(
        schema["prompt"],
        "list<element: struct<role: string not null, content: string not null> not null>"
    );
    assert_eq!(
        schema["images"],
        "list<element: struct<bytes: binary not null, path: string not null> not null>"
    );
    assert_eq!(
        schema["reward_model"],
        "struct<ground_truth: string not null, candidate_answers: string not null, style: string not null>"
    );
    assert_eq!(schema["data_source"], "string");
    assert_eq!(schema["image_urls"], "list<element: string not null>");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["prompt"][0]["content"], "<image>question 0");
    assert_eq!(
        rows[1]["images"][0]["bytes"],
        serde_json::json!([255, 216, 1])
    );
    assert_eq!(rows[1]["images"][0]["path"], "queries/1.jpg");
    assert_eq!(rows[0]["reward_model"]["candidate_answers"], r#"["alt"]"#);
    assert_eq!(rows[0]["image_urls"], serde_json::json!(["http://h/a.jpg"]));
    assert!(rows[1]["image_urls"].is_null());
    assert_eq!(rows[1]["extra_info"]["search_required"], true);
}
