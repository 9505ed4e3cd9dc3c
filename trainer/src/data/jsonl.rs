//! JSONL with an image folder: one object per line,
//! `{"question", "image" | "images", "answer" | "ground_truth",
//!   "candidate_answers", "data_source", "image_url"}`; image names are
//! relative to the image folder (default: the file's own folder).

use super::image_file::ImageFolder;
use super::sample::{
    Sample, candidates_from_json, check_image, check_question, clean_question, parse_candidates,
};
use super::{RowOutcome, source_name};
use crate::reward::GoldAnswers;
use anyhow::{Context, Result};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

pub fn read(path: &Path, image_dir: Option<&Path>) -> Result<Vec<RowOutcome>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let dir = ImageFolder::for_dataset(path, image_dir);
    let name = source_name(path);
    let mut out = Vec::new();
    let mut reader = std::io::BufReader::new(file);
    let mut raw = Vec::new();
    for row in 0.. {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .with_context(|| format!("{}: cannot read line {}", path.display(), row + 1))?;
        if n == 0 {
            break;
        }
        // A line that is not UTF-8 is one bad row, not the end of the file.
        let sample = match std::str::from_utf8(&raw) {
            Err(e) => Err(format!("not UTF-8: {e}")),
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => serde_json::from_str::<Value>(line)
                .map_err(|e| format!("not JSON: {e}"))
                .and_then(|v| row_to_sample(format!("{name}#{row}"), &v, &dir)),
        };
        out.push(RowOutcome { row, sample });
    }
    Ok(out)
}

fn row_to_sample(id: String, v: &Value, dir: &ImageFolder) -> Result<Sample, String> {
    let obj = v.as_object().ok_or("line is not a JSON object")?;
    let text = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let question = text("question")
        .map(clean_question)
        .ok_or("missing `question`")?;
    check_question(&question)?;
    let names: Vec<String> = match (obj.get("images"), text("image")) {
        (Some(Value::Array(items)), _) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(String::from)
                    .ok_or("`images` holds a non-string")
            })
            .collect::<Result<_, _>>()?,
        (_, Some(one)) => vec![one.to_string()],
        _ => return Err("missing `image` (or `images`)".into()),
    };
    if names.is_empty() {
        return Err("`images` is empty".into());
    }
    let mut images = Vec::with_capacity(names.len());
    for n in &names {
        let bytes = dir.read(n)?;
        check_image(&bytes).map_err(|e| format!("{n}: {e}"))?;
        images.push(bytes);
    }
    let ground_truth = text("ground_truth")
        .or(text("answer"))
        .ok_or("missing `answer` (or `ground_truth`)")?
        .to_string();
    let candidates = match obj.get("candidate_answers") {
        Some(Value::String(s)) => parse_candidates(Some(s))?,
        Some(other) => candidates_from_json(other)?,
        None => Vec::new(),
    };
    Ok(Sample {
        id,
        question,
        images,
        image_url: text("image_url").map(String::from),
        gold: GoldAnswers {
            ground_truth,
            candidates,
        },
        data_source: text("data_source").unwrap_or_default().to_string(),
    })
}
