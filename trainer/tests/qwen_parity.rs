//! Parity with transformers 5.23 on a tiny random Qwen2.5-VL, built by
//! `tests/python/qwen_vl_reference.py` into a tempdir once per run.

use mmsr_trainer::model::generate::{GenParams, GenStats, SeqState, generate};
use mmsr_trainer::model::layers::Mode;
use mmsr_trainer::model::rope::{positions_tensor, rope_positions};
use mmsr_trainer::model::sampling::Sampling;
use mmsr_trainer::model::tokenizer::ChatTokenizer;
use mmsr_trainer::model::{
    ImageProcessor, PolicyOptions, ProcessedImage, QwenVl, QwenVlPolicy, VisionInput,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

fn python() -> PathBuf {
    std::env::var_os("MMSR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/qwen_vl_reference.py")
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    inputs: HashMap<String, Tensor>,
    refs: HashMap<String, Tensor>,
    json: serde_json::Value,
}

unsafe impl Sync for Fixture {}

/// Built once; a failed build fails every test at once, without rerunning.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Result<Fixture, String>> = OnceLock::new();
    F.get_or_init(|| {
        std::panic::catch_unwind(build).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "fixture build panicked".into())
        })
    })
    .as_ref()
    .unwrap_or_else(|e| panic!("{e}"))
}

fn build() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let out = Command::new(python())
        .arg(script())
        .arg("build")
        .arg(&root)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "qwen_vl_reference.py build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| -> HashMap<String, Tensor> {
        Tensor::read_safetensors(root.join(f))
            .unwrap()
            .into_iter()
            .collect()
    };
    let json = serde_json::from_str(&std::fs::read_to_string(root.join("reference.json")).unwrap())
        .unwrap();
    Fixture {
        inputs: read("inputs.safetensors"),
        refs: read("reference.safetensors"),
        json,
        root,
        _dir: dir,
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    f64::try_from(
        (a.to_kind(Kind::Float) - b.to_kind(Kind::Float))
            .abs()
            .max(),
    )
    .unwrap()
}

fn grids(thw: &Tensor) -> Vec<[i64; 3]> {
    let v = Vec::<i64>::try_from(thw.flatten(0, -1)).unwrap();
    v.chunks(3).map(|c| [c[0], c[1], c[2]]).collect()
}

/// Logits of a multimodal prompt (inputs with `suffix`).
fn mm_logits(model: &QwenVl, f: &Fixture, suffix: &str) -> Tensor {
    let ids = &f.inputs[&format!("input_ids{suffix}")];
    let tokens = Vec::<i64>::try_from(ids.flatten(0, -1)).unwrap();
    let g = grids(&f.inputs[&format!("image_grid_thw{suffix}")]);
    let merged: Vec<[i64; 3]> = g.iter().map(|&[t, h, w]| [t, h / 2, w / 2]).collect();
    let (pos, _) = rope_positions(&tokens, model.cfg.image_token_id, &merged, 0).unwrap();
    let positions = positions_tensor(&[pos], tokens.len(), Device::Cpu);
    let vision = VisionInput {
        pixel_values: &f.inputs[&format!("pixel_values{suffix}")],
        grids: &g,
    };
    tch::no_grad(|| model.forward(ids, &positions, Some(vision)).unwrap()).squeeze_dim(0)
}

/// Logits of the multimodal prompt and the text-only prompt.
fn logits(model: &QwenVl, f: &Fixture) -> (Tensor, Tensor) {
    let mm = mm_logits(model, f, "");
    let text_ids = &f.inputs["text_ids"];
    let n = text_ids.size()[1];
    let pos: Vec<[i64; 3]> = (0..n).map(|i| [i; 3]).collect();
    let text = tch::no_grad(|| {
        model
            .forward(
                text_ids,
                &positions_tensor(&[pos], n as usize, Device::Cpu),
                None,
            )
            .unwrap()
    });
    (mm, text.squeeze_dim(0))
}

#[test]
fn logits_match_transformers_in_f32() {
    let f = fixture();
    let model = QwenVl::load(&f.root.join("model"), Kind::Float, Device::Cpu).unwrap();
    let (mm, text) = logits(&model, f);
    let d_mm = max_diff(&mm, &f.refs["logits_mm"]);
    let d_text = max_diff(&text, &f.refs["logits_text"]);
    let d_two = max_diff(&mm_logits(&model, f, "_2"), &f.refs["logits_mm2"]);
    eprintln!("max abs diff: multimodal {d_mm:.2e}, text {d_text:.2e}, two images {d_two:.2e}");
    assert!(d_two <= 1e-4, "two-image logits differ by {d_two}");
    assert!(d_mm <= 1e-4, "multimodal logits differ by {d_mm}");
    assert!(d_text <= 1e-4, "text logits differ by {d_text}");
}

#[test]
fn pixel_values_match_transformers() {
    let f = fixture();
    let p = ImageProcessor::from_file(&f.root.join("model/preprocessor_config.json")).unwrap();
    for entry in std::fs::read_dir(f.root.join("images")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let got = p.process_bytes(&std::fs::read(&path).unwrap()).unwrap();
        let want_grid = grids(&f.refs[&format!("image_grid_thw.{name}")]);
        assert_eq!(vec![got.grid_thw], want_grid, "{name}: grid");
        let d = max_diff(&got.pixel_values, &f.refs[&format!("pixel_values.{name}")]);
        // PNGs decode identically; JPEG decoders differ by a level or two.
        eprintln!("{name}: max abs diff {d:.2e}");
        let tol = if path.extension().unwrap() == "png" {
            1e-5
        } else {
            0.1
        };
        assert!(d <= tol, "{name}: pixel values differ by {d}");
    }
}

#[test]
fn chat_formatted_ids_match_transformers() {
    let f = fixture();
    let tok = ChatTokenizer::from_dir(&f.root.join("model")).unwrap();
    for chat in f.json["chats"].as_array().unwrap() {
        let messages: Vec<serde_json::Value> =
            serde_json::from_value(chat["messages"].clone()).unwrap();
        let prompt = chat["add_generation_prompt"].as_bool().unwrap();
        let text = tok.render(&messages, prompt).unwrap();
        assert_eq!(text, chat["text"].as_str().unwrap());
        let want: Vec<i64> = serde_json::from_value(chat["ids"].clone()).unwrap();
        assert_eq!(tok.encode(&text).unwrap(), want, "ids of {text:?}");
    }
}

#[test]
fn twenty_greedy_tokens_match_transformers() {
    let f = fixture();
    let model = QwenVl::load(&f.root.join("model"), Kind::Float, Device::Cpu).unwrap();
    let tokens = Vec::<i64>::try_from(f.inputs["input_ids"].flatten(0, -1)).unwrap();
    let image = ProcessedImage {
        pixel_values: f.inputs["pixel_values"].shallow_clone(),
        grid_thw: grids(&f.inputs["image_grid_thw"])[0],
    };
    let mut seq = SeqState::new();
    seq.push(&tokens, vec![image], &model).unwrap();
    let params = GenParams {
        sampling: Sampling::greedy(),
        max_new_tokens: 20,
        stop: Vec::new(),
        share_prefill: false,
    };
    let out = generate(
        &model,
        &mut [&mut seq],
        &params,
        0,
        Mode::EVAL,
        &mut GenStats::default(),
    )
    .unwrap();
    let want: Vec<i64> = serde_json::from_value(f.json["greedy"].clone()).unwrap();
    assert_eq!(out[0].ids, want);
    assert_eq!(seq.len(), tokens.len() + 20);
}

#[test]
fn save_pretrained_round_trips_through_transformers() {
    let f = fixture();
    let policy = QwenVlPolicy::load(&f.root.join("model"), &PolicyOptions::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let saved = out.path().join("saved");
    policy.save_pretrained(&saved).unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
    ] {
        assert!(saved.join(file).exists(), "{file} missing");
    }
    let status = Command::new(python())
        .arg(script())
        .arg("logits")
        .arg(&saved)
        .arg(&f.root)
        .output()
        .expect("run python");
    assert!(
        status.status.success(),
        "transformers could not load the saved dir:\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let back: HashMap<String, Tensor> =
        Tensor::read_safetensors(f.root.join("roundtrip.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    for key in ["logits_mm", "logits_text", "logits_mm2"] {
        let d = max_diff(&back[key], &f.refs[key]);
        assert!(
            d <= 1e-4,
            "{key}: transformers on the saved dir differs by {d}"
        );
    }
    // And our own loader reads it back to the same weights.
    let again = QwenVl::load(&saved, Kind::Float, Device::Cpu).unwrap();
    for ((n, a), (m, b)) in policy.model().params.iter().zip(&again.params) {
        assert_eq!(n, m);
        assert!(a.equal(b), "{n}");
    }
}

#[test]
fn half_precision_loads_and_stays_close() {
    let f = fixture();
    for kind in [Kind::BFloat16, Kind::Half] {
        let model = QwenVl::load(&f.root.join("model"), kind, Device::Cpu).unwrap();
        assert_eq!(model.kind(), kind);
        let (mm, _) = logits(&model, f);
        let want = &f.refs["logits_mm"];
        let scale = f64::try_from(want.abs().max()).unwrap();
        let d = max_diff(&mm, want);
        assert!(
            d <= 0.05 * scale,
            "{kind:?}: logits differ by {d} (scale {scale})"
        );
        let agree = f64::try_from(
            mm.to_kind(Kind::Float)
                .argmax(-1, false)
                .eq_tensor(&want.argmax(-1, false))
                .to_kind(Kind::Float)
                .mean(Kind::Float),
        )
        .unwrap();
        assert!(
            agree >= 0.9,
            "{kind:?}: argmax agrees on {agree:.2} of positions"
        );
    }
}

#[test]
fn the_flat_published_config_layout_loads_the_same_model() {
    let f = fixture();
    let nested: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.root.join("model/config.json")).unwrap())
            .unwrap();
    // Hub layout: decoder fields at the top, rope_scaling {type: mrope}.
    let mut flat = nested["text_config"].as_object().unwrap().clone();
    let rope = flat.remove("rope_parameters").unwrap();
    flat.insert("rope_theta".into(), rope["rope_theta"].clone());
    flat.insert(
        "rope_scaling".into(),
        serde_json::json!({"type": "mrope", "mrope_section": rope["mrope_section"]}),
    );
    for key in [
        "image_token_id",
        "video_token_id",
        "vision_start_token_id",
        "vision_end_token_id",
        "tie_word_embeddings",
        "vision_config",
    ] {
        flat.insert(key.into(), nested[key].clone());
    }
    flat.insert("model_type".into(), "qwen2_5_vl".into());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&flat).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        f.root.join("model/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let model = QwenVl::load(dir.path(), Kind::Float, Device::Cpu).unwrap();
    assert_eq!(model.cfg.mrope_section, [2, 3, 3]);
    let (mm, _) = logits(&model, f);
    assert!(max_diff(&mm, &f.refs["logits_mm"]) <= 1e-4);
}
