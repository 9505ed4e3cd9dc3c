//! Writes questions as the seed project's parquet: `prompt` (list of
//! {role, content}), `images` (list of {bytes, path}, JPEG), `reward_model`
//! ({ground_truth, candidate_answers as a JSON string, style}),
//! `data_source` and `image_urls`, plus veRL's usual `extra_info`.
//!
//! Written with parquet's column writer (standard 3-level lists), so the
//! build carries no Arrow kernels; pyarrow and pandas read it as the seed's
//! schema (checked in `tests/data_loading.rs`).

use anyhow::Context;
use parquet::basic::Compression;
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::path::Path;
use std::sync::Arc;

/// Where a row's split label lives for real data too: the paper's
/// search-free / search-required balance.
pub const SEARCH_FREE_SOURCE: &str = "mmsr_demo/search_free";
pub const SEARCH_REQUIRED_SOURCE: &str = "mmsr_demo/search_required";

/// One dataset row in the seed's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedRow {
    /// (role, content) messages; the question is one user message.
    pub prompt: Vec<(String, String)>,
    /// (JPEG bytes, path) of each image.
    pub images: Vec<(Vec<u8>, String)>,
    pub ground_truth: String,
    pub candidate_answers: Vec<String>,
    pub data_source: String,
    /// One public URL per image, for Lens; `None` writes a null.
    pub image_urls: Option<Vec<String>>,
    pub extra: ExtraInfo,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExtraInfo {
    pub id: String,
    pub split: String,
    pub kind: String,
    pub entity: String,
    pub search_required: bool,
}

/// The seed's schema; leaves in this order are what [`columns`] yields.
const SCHEMA: &str = "
message seed_row {
  optional group prompt (LIST) {
    repeated group list {
      required group element {
        required binary role (UTF8);
        required binary content (UTF8);
      }
    }
  }
  optional group images (LIST) {
    repeated group list {
      required group element {
        required binary bytes;
        required binary path (UTF8);
      }
    }
  }
  optional group reward_model {
    required binary ground_truth (UTF8);
    required binary candidate_answers (UTF8);
    required binary style (UTF8);
  }
  optional binary data_source (UTF8);
  optional group image_urls (LIST) {
    repeated group list {
      required binary element (UTF8);
    }
  }
  optional group extra_info {
    required binary id (UTF8);
    required binary split (UTF8);
    required binary kind (UTF8);
    required binary entity (UTF8);
    required boolean search_required;
  }
}
";

/// One leaf column: values with Dremel definition and repetition levels.
struct Leaf<T> {
    values: Vec<T>,
    def: Vec<i16>,
    /// `None` for leaves outside any list.
    rep: Option<Vec<i16>>,
}

/// A leaf under `optional group (LIST) { repeated group list { required … } }`:
/// definition 0 is a null list, 1 an empty one, 2 a value.
fn list_leaf<T>(rows: impl Iterator<Item = Option<Vec<T>>>) -> Leaf<T> {
    let (mut values, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        match row {
            None => {
                def.push(0);
                rep.push(0);
            }
            Some(items) if items.is_empty() => {
                def.push(1);
                rep.push(0);
            }
            Some(items) => {
                for (i, v) in items.into_iter().enumerate() {
                    values.push(v);
                    def.push(2);
                    rep.push(i16::from(i > 0));
                }
            }
        }
    }
    Leaf {
        values,
        def,
        rep: Some(rep),
    }
}

/// A leaf that is present in every row (an optional column or a required
/// field of an optional group, always written): definition 1.
fn flat_leaf<T>(rows: impl Iterator<Item = T>) -> Leaf<T> {
    let values: Vec<T> = rows.collect();
    Leaf {
        def: vec![1; values.len()],
        values,
        rep: None,
    }
}

enum Column {
    Bytes(Leaf<ByteArray>),
    Bool(Leaf<bool>),
}

fn text(s: &str) -> ByteArray {
    ByteArray::from(s.as_bytes().to_vec())
}

/// Every leaf of [`SCHEMA`], in schema order.
fn columns(rows: &[SeedRow]) -> anyhow::Result<Vec<Column>> {
    let prompt = |pick: fn(&(String, String)) -> &String| {
        list_leaf(
            rows.iter()
                .map(|r| Some(r.prompt.iter().map(|m| text(pick(m))).collect())),
        )
    };
    let candidates = rows
        .iter()
        .map(|r| serde_json::to_string(&r.candidate_answers).map(|s| text(&s)))
        .collect::<Result<Vec<_>, _>>()?;
    let extra =
        |pick: fn(&ExtraInfo) -> &String| flat_leaf(rows.iter().map(|r| text(pick(&r.extra))));
    Ok(vec![
        Column::Bytes(prompt(|m| &m.0)),
        Column::Bytes(prompt(|m| &m.1)),
        Column::Bytes(list_leaf(rows.iter().map(|r| {
            Some(
                r.images
                    .iter()
                    .map(|(b, _)| ByteArray::from(b.clone()))
                    .collect(),
            )
        }))),
        Column::Bytes(list_leaf(
            rows.iter()
                .map(|r| Some(r.images.iter().map(|(_, p)| text(p)).collect())),
        )),
        Column::Bytes(flat_leaf(rows.iter().map(|r| text(&r.ground_truth)))),
        Column::Bytes(flat_leaf(candidates.into_iter())),
        Column::Bytes(flat_leaf(rows.iter().map(|_| text("rule")))),
        Column::Bytes(flat_leaf(rows.iter().map(|r| text(&r.data_source)))),
        Column::Bytes(list_leaf(rows.iter().map(|r| {
            r.image_urls
                .as_ref()
                .map(|urls| urls.iter().map(|u| text(u)).collect())
        }))),
        Column::Bytes(extra(|e| &e.id)),
        Column::Bytes(extra(|e| &e.split)),
        Column::Bytes(extra(|e| &e.kind)),
        Column::Bytes(extra(|e| &e.entity)),
        Column::Bool(flat_leaf(rows.iter().map(|r| r.extra.search_required))),
    ])
}

/// Writes `rows` to `path` (snappy-compressed parquet, one row group).
pub fn write_parquet(path: &Path, rows: &[SeedRow]) -> anyhow::Result<()> {
    let schema = Arc::new(parse_message_type(SCHEMA).context("the seed schema")?);
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = SerializedFileWriter::new(file, schema, Arc::new(props))?;
    let mut group = writer.next_row_group()?;
    let mut leaves = columns(rows)?.into_iter();
    while let Some(mut col) = group.next_column()? {
        let leaf = leaves
            .next()
            .context("schema has more leaves than columns()")?;
        match (col.untyped(), leaf) {
            (ColumnWriter::ByteArrayColumnWriter(w), Column::Bytes(l)) => {
                w.write_batch(&l.values, Some(&l.def), l.rep.as_deref())?
            }
            (ColumnWriter::BoolColumnWriter(w), Column::Bool(l)) => {
                w.write_batch(&l.values, Some(&l.def), l.rep.as_deref())?
            }
            _ => anyhow::bail!("a leaf of the seed schema has the wrong type"),
        };
        col.close()?;
    }
    group.close()?;
    writer
        .close()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{LoadOptions, inspect};

    fn jpeg(i: u8) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::from_pixel(8, 8, image::Rgb([i, 0, 0]))
            .write_to(
                &mut std::io::Cursor::new(&mut out),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        out
    }

    fn row(i: usize, urls: Option<Vec<String>>) -> SeedRow {
        SeedRow {
            prompt: vec![
                ("system".into(), "be brief".into()),
                ("user".into(), format!("question {i}")),
            ],
            images: vec![(jpeg(i as u8), format!("queries/{i}.jpg"))],
            ground_truth: format!("answer {i}"),
            candidate_answers: vec!["alt".into()],
            data_source: SEARCH_FREE_SOURCE.into(),
            image_urls: urls,
            extra: ExtraInfo {
                id: format!("q{i}"),
                split: "train".into(),
                kind: "name".into(),
                entity: "Vorlak".into(),
                search_required: i.is_multiple_of(2),
            },
        }
    }

    #[test]
    fn levels_mark_null_empty_and_repeated_lists() {
        let l = list_leaf([None, Some(vec![]), Some(vec![7, 8, 9])].into_iter());
        assert_eq!(l.values, vec![7, 8, 9]);
        assert_eq!(l.def, vec![0, 1, 2, 2, 2]);
        assert_eq!(l.rep, Some(vec![0, 0, 0, 1, 1]));
    }

    #[test]
    fn round_trips_through_the_trainers_loader() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d.parquet");
        let rows = vec![
            row(0, Some(vec!["http://127.0.0.1:1/a.jpg".into()])),
            row(1, None),
            row(2, Some(vec![])),
        ];
        write_parquet(&path, &rows).unwrap();
        let ds = inspect(&path, &LoadOptions::default()).unwrap();
        assert_eq!((ds.report.rows, ds.report.valid), (3, 3));
        for (i, s) in ds.samples.iter().enumerate() {
            assert_eq!(s.question, format!("question {i}"));
            assert_eq!(s.images, vec![jpeg(i as u8)]);
            assert_eq!(s.gold.ground_truth, format!("answer {i}"));
            assert_eq!(s.gold.candidates, vec!["alt"]);
            assert_eq!(s.data_source, SEARCH_FREE_SOURCE);
        }
        assert_eq!(
            ds.samples[0].image_url.as_deref(),
            Some("http://127.0.0.1:1/a.jpg")
        );
        assert!(ds.samples[1].image_url.is_none() && ds.samples[2].image_url.is_none());
    }
}
