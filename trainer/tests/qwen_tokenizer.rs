//! The real Qwen vocabulary, offline: `tests/python/qwen_tokenizer_json.py`
//! derives tokenizer.json from qwen.tiktoken's ranks; our tokenizer and chat
//! template must give tiktoken's ids.

use mmsr_trainer::model::tokenizer::ChatTokenizer;
use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> PathBuf {
    std::env::var_os("MMSR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

#[test]
fn qwen_vocabulary_matches_tiktoken() {
    let dir = tempfile::tempdir().unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/qwen_tokenizer_json.py");
    let out = Command::new(python())
        .arg(script)
        .arg(dir.path())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "qwen_tokenizer_json.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tok = ChatTokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(
        tok.encode("Hello world<|im_end|>").unwrap(),
        vec![9707, 1879, 151645]
    );
    assert_eq!(tok.im_end, 151645);
    assert_eq!(tok.token_id("<|image_pad|>"), Some(151655));
    assert_eq!(tok.token_id("<|file_sep|>"), Some(151664));
    assert_eq!(tok.gen_prompt, "<|im_start|>assistant\n");
    assert_eq!(tok.closer, "<|im_end|>\n");

    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("expected.json")).unwrap())
            .unwrap();
    let mut ids_of = std::collections::HashMap::new();
    for case in expected["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<i64> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(tok.encode(text).unwrap(), want, "ids of {text:?}");
        assert_eq!(
            tok.decode(&want, false).unwrap(),
            text,
            "decode of {text:?}"
        );
        ids_of.insert(text.to_string(), want);
    }
    for chat in expected["chats"].as_array().unwrap() {
        let messages: Vec<serde_json::Value> =
            serde_json::from_value(chat["messages"].clone()).unwrap();
        let text = tok.render(&messages, true).unwrap();
        assert_eq!(text, chat["text"].as_str().unwrap());
        assert_eq!(&tok.encode(&text).unwrap(), &ids_of[&text]);
    }
}
