//! The seed project's parquet: `prompt` (list of {role, content}), `images`
//! (list of {bytes, path}), `reward_model` ({ground_truth, candidate_answers
//! as a JSON string, style}), `data_source`, and a nullable `image_urls`.

use super::cell::{Cell, cell};
use super::image_file::ImageFolder;
use super::sample::{Sample, check_image, check_question, clean_question, parse_candidates};
use super::{RowOutcome, source_name};
use crate::reward::GoldAnswers;
use anyhow::{Context, Result, bail};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::Type;
use std::path::Path;

const REQUIRED: [&str; 3] = ["prompt", "images", "reward_model"];
/// What a row is read from; other columns (veRL's `extra_info`, …) are not
/// decoded at all.
const USED: [&str; 5] = [
    "prompt",
    "images",
    "reward_model",
    "data_source",
    "image_urls",
];

/// Reads every row; a bad row becomes `Err(reason)` in its slot. Only a file
/// that cannot be read as this format at all is an `Err`.
pub fn read(path: &Path, image_dir: Option<&Path>) -> Result<Vec<RowOutcome>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = SerializedFileReader::new(file)
        .with_context(|| format!("{} is not a parquet file", path.display()))?;
    let root = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema();
    let have: Vec<&str> = root.get_fields().iter().map(|f| f.name()).collect();
    for col in REQUIRED {
        if !have.contains(&col) {
            bail!(
                "{}: missing column `{col}` (columns: {})",
                path.display(),
                have.join(", ")
            );
        }
    }
    let projection = Type::group_type_builder(root.name())
        .with_fields(
            root.get_fields()
                .iter()
                .filter(|f| USED.contains(&f.name()))
                .cloned()
                .collect(),
        )
        .build()?;
    let base = ImageFolder::for_dataset(path, image_dir);
    let name = source_name(path);
    let mut out = Vec::new();
    for record in reader
        .get_row_iter(Some(projection))
        .with_context(|| format!("{}: unreadable schema", path.display()))?
    {
        let row = out.len();
        let record =
            record.with_context(|| format!("{}: corrupt data at row {row}", path.display()))?;
        let get = |n: &str| {
            record
                .get_column_iter()
                .find(|(k, _)| k.as_str() == n)
                .map_or(Ok(Cell::Null), |(_, f)| cell(f))
        };
        let sample = (|| {
            row_to_sample(
                format!("{name}#{row}"),
                &get("prompt")?,
                &get("images")?,
                &get("reward_model")?,
                &get("data_source")?,
                &get("image_urls")?,
                &base,
            )
        })();
        out.push(RowOutcome { row, sample });
    }
    Ok(out)
}

fn row_to_sample(
    id: String,
    prompt: &Cell,
    images: &Cell,
    reward: &Cell,
    source: &Cell,
    urls: &Cell,
    base: &ImageFolder,
) -> Result<Sample, String> {
    let Cell::List(messages) = prompt else {
        return Err("prompt is not a list of messages".into());
    };
    let question = messages
        .iter()
        .filter(|m| m.field("role").and_then(Cell::as_str) == Some("user"))
        .filter_map(|m| m.field("content").and_then(Cell::as_str))
        .map(clean_question)
        .find(|q| !q.is_empty())
        .ok_or("prompt has no user message with a question")?;
    check_question(&question)?;

    let Cell::List(entries) = images else {
        return Err("images is null or not a list".into());
    };
    if entries.is_empty() {
        return Err("images is empty".into());
    }
    let mut bytes_out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let bytes = match (e.field("bytes"), e.field("path").and_then(Cell::as_str)) {
            (Some(Cell::Bytes(b)), _) if !b.is_empty() => b.clone(),
            (_, Some(p)) if !p.is_empty() => {
                base.read(p).map_err(|err| format!("images[{i}]: {err}"))?
            }
            _ => return Err(format!("images[{i}] has neither bytes nor a path")),
        };
        check_image(&bytes).map_err(|err| format!("images[{i}]: {err}"))?;
        bytes_out.push(bytes);
    }

    if reward.is_null() {
        return Err("reward_model is null".into());
    }
    let ground_truth = reward
        .field("ground_truth")
        .and_then(Cell::as_str)
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .ok_or("reward_model.ground_truth is missing or empty")?
        .to_string();
    let candidates = match reward.field("candidate_answers") {
        None | Some(Cell::Null) => Vec::new(),
        Some(Cell::List(items)) => items
            .iter()
            .filter_map(Cell::as_str)
            .map(String::from)
            .collect(),
        Some(c) => parse_candidates(c.as_str()).map_err(|e| format!("reward_model.{e}"))?,
    };

    let image_url = match urls {
        Cell::List(items) => items.iter().find_map(Cell::as_str).map(String::from),
        Cell::Str(s) => Some(s.clone()),
        _ => None,
    }
    .filter(|u| !u.is_empty());

    Ok(Sample {
        id,
        question,
        images: bytes_out,
        image_url,
        gold: GoldAnswers {
            ground_truth,
            candidates,
        },
        data_source: source.as_str().unwrap_or_default().to_string(),
    })
}
