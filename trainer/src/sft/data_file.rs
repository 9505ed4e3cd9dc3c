//! `RUN_DIR/sft_data.safetensors`: the SFT train set as built (after the
//! repeats and masks of `[sft]`), so a resumed run fits on exactly the
//! data it started with, without asking the search tools again (a paid
//! API, or one whose answers have changed since).
//!
//! Ragged per-transcript arrays are stored flat with their end offsets;
//! the data stats and the build time ride in the header's metadata.

use super::transcripts::DataStats;
use crate::policy::Transcript;
use anyhow::{Context, Result, bail, ensure};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

pub const DATA_FILE: &str = "sft_data.safetensors";
const FORMAT: &str = "1";

/// What a run fits on, as written before its first step.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedData {
    pub transcripts: Vec<Transcript>,
    pub stats: DataStats,
    pub build_s: f64,
}

/// The content hash a checkpoint records, so it resumes only on its data.
pub fn fingerprint(bytes: &[u8]) -> String {
    format!("sft data sha256 {}", hex::encode(Sha256::digest(bytes)))
}

fn ends(lens: impl Iterator<Item = usize>) -> Vec<u8> {
    let mut end = 0i64;
    lens.flat_map(|n| {
        end += n as i64;
        end.to_le_bytes()
    })
    .collect()
}

fn to_bytes(data: &SavedData) -> Result<Vec<u8>> {
    let ts = &data.transcripts;
    for (i, t) in ts.iter().enumerate() {
        ensure!(
            t.response_mask.len() == t.tokens.len() && t.sample_logprobs.len() == t.tokens.len(),
            "SFT transcript {i}: mask, log-probs and tokens differ in length"
        );
    }
    let tokens: Vec<u8> = ts
        .iter()
        .flat_map(|t| t.tokens.iter().flat_map(|v| v.to_le_bytes()))
        .collect();
    let mask: Vec<u8> = ts.iter().flat_map(|t| t.response_mask.clone()).collect();
    let logprobs: Vec<u8> = ts
        .iter()
        .flat_map(|t| t.sample_logprobs.iter().flat_map(|v| v.to_le_bytes()))
        .collect();
    let token_ends = ends(ts.iter().map(|t| t.tokens.len()));
    let image_counts = ends(ts.iter().map(|t| t.images.len()));
    let images: Vec<&Vec<u8>> = ts.iter().flat_map(|t| &t.images).collect();
    let image_bytes: Vec<u8> = images.iter().flat_map(|i| i.iter().copied()).collect();
    let image_ends = ends(images.iter().map(|i| i.len()));
    let n_tokens: usize = ts.iter().map(|t| t.tokens.len()).sum();
    let views = [
        ("tokens", Dtype::I64, n_tokens, &tokens),
        ("mask", Dtype::U8, n_tokens, &mask),
        ("logprobs", Dtype::F32, n_tokens, &logprobs),
        ("token_ends", Dtype::I64, ts.len(), &token_ends),
        (
            "image_ends_per_transcript",
            Dtype::I64,
            ts.len(),
            &image_counts,
        ),
        ("image_bytes", Dtype::U8, image_bytes.len(), &image_bytes),
        ("image_ends", Dtype::I64, images.len(), &image_ends),
    ]
    .into_iter()
    .map(|(name, dtype, n, bytes)| Ok((name, TensorView::new(dtype, vec![n], bytes)?)))
    .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("stats".to_string(), serde_json::to_string(&data.stats)?),
        ("build_s".to_string(), data.build_s.to_string()),
    ]);
    Ok(safetensors::tensor::serialize(views, &Some(meta))?)
}

/// Writes `data` to `path` whole or not at all (temp file, fsync, rename);
/// returns its fingerprint.
pub fn write(path: &Path, data: &SavedData) -> Result<String> {
    let bytes = to_bytes(data).with_context(|| format!("encoding {}", path.display()))?;
    let tmp = path.with_extension("safetensors.tmp");
    let written = std::fs::write(&tmp, &bytes)
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(fingerprint(&bytes))
}

/// Reads what [`write`] wrote, with its fingerprint; a damaged file is
/// refused by name.
pub fn read(path: &Path) -> Result<(SavedData, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let data = from_bytes(&bytes).with_context(|| {
        format!(
            "{} is not a whole SFT data file; remove the run dir to start again",
            path.display()
        )
    })?;
    Ok((data, fingerprint(&bytes)))
}

fn from_bytes(bytes: &[u8]) -> Result<SavedData> {
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    let file = SafeTensors::deserialize(bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |k: &str| {
        meta.get(k)
            .with_context(|| format!("no `{k}` in its metadata"))
    };
    ensure!(
        get("format")? == FORMAT,
        "format {} (this build reads {FORMAT})",
        get("format")?
    );
    let stats: DataStats = serde_json::from_str(get("stats")?).context("its `stats`")?;
    let build_s: f64 = get("build_s")?.parse().context("its `build_s`")?;
    let column = |name: &str, dtype: Dtype| -> Result<&[u8]> {
        let view = file
            .tensor(name)
            .map_err(|e| anyhow::anyhow!("tensor `{name}`: {e}"))?;
        ensure!(
            view.dtype() == dtype,
            "tensor `{name}` is {:?}",
            view.dtype()
        );
        Ok(view.data())
    };
    let i64s = |name: &str| -> Result<Vec<i64>> {
        Ok(column(name, Dtype::I64)?
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    };
    let tokens = i64s("tokens")?;
    let mask = column("mask", Dtype::U8)?;
    let logprobs: Vec<f32> = column("logprobs", Dtype::F32)?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    ensure!(
        mask.len() == tokens.len() && logprobs.len() == tokens.len(),
        "tokens, mask and log-probs differ in length"
    );
    let image_bytes = column("image_bytes", Dtype::U8)?;
    let token_ends = spans(&i64s("token_ends")?, tokens.len(), "token_ends")?;
    let image_ends = spans(&i64s("image_ends")?, image_bytes.len(), "image_ends")?;
    let per = spans(
        &i64s("image_ends_per_transcript")?,
        image_ends.len(),
        "image_ends_per_transcript",
    )?;
    if per.len() != token_ends.len() {
        bail!(
            "{} transcripts by their tokens, {} by their images",
            token_ends.len(),
            per.len()
        );
    }
    let transcripts = token_ends
        .iter()
        .zip(&per)
        .map(|(t, imgs)| Transcript {
            tokens: tokens[t.clone()].to_vec(),
            response_mask: mask[t.clone()].to_vec(),
            sample_logprobs: logprobs[t.clone()].to_vec(),
            images: image_ends[imgs.clone()]
                .iter()
                .map(|r| image_bytes[r.clone()].to_vec())
                .collect(),
        })
        .collect();
    Ok(SavedData {
        transcripts,
        stats,
        build_s,
    })
}

/// End offsets into ranges over `0..total`, each checked.
fn spans(ends: &[i64], total: usize, what: &str) -> Result<Vec<std::ops::Range<usize>>> {
    let mut start = 0usize;
    let mut out = Vec::with_capacity(ends.len());
    for &end in ends {
        let end = usize::try_from(end)
            .ok()
            .filter(|&e| e >= start && e <= total);
        let Some(end) = end else {
            bail!("`{what}` runs backwards or past its data");
        };
        out.push(start..end);
        start = end;
    }
    ensure!(start == total, "`{what}` leaves data unused");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> SavedData {
        SavedData {
            transcripts: vec![
                Transcript {
                    tokens: vec![1, 2, -3],
                    response_mask: vec![0, 1, 4],
                    sample_logprobs: vec![0.0, -0.5, -1.25],
                    images: vec![vec![9, 8, 7], vec![]],
                },
                Transcript {
                    tokens: vec![],
                    response_mask: vec![],
                    sample_logprobs: vec![],
                    images: vec![],
                },
                Transcript {
                    tokens: vec![i64::MAX],
                    response_mask: vec![1],
                    sample_logprobs: vec![f32::MIN_POSITIVE],
                    images: vec![vec![1]],
                },
            ],
            stats: DataStats {
                samples: 3,
                direct: 2,
                response_tokens: 3,
                ..Default::default()
            },
            build_s: 1.5,
        }
    }

    #[test]
    fn round_trips_and_refuses_damage_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATA_FILE);
        let written = write(&path, &data()).unwrap();
        let (back, read_fp) = read(&path).unwrap();
        assert_eq!(back, data());
        assert_eq!(written, read_fp);
        let empty = SavedData {
            transcripts: vec![],
            ..data()
        };
        write(&path, &empty).unwrap();
        assert_eq!(read(&path).unwrap().0, empty);
        // Another train set, another fingerprint.
        assert_ne!(read(&path).unwrap().1, written);

        write(&path, &data()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 2);
        std::fs::write(&path, &bytes).unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(
            err.contains("sft_data.safetensors is not a whole SFT data file"),
            "{err}"
        );
        // Offsets that point past the data.
        let mut bad = data();
        bad.transcripts[0].response_mask.push(1);
        assert!(to_bytes(&bad).is_err());
        assert!(spans(&[2, 1], 2, "x").is_err());
        assert!(spans(&[1], 2, "x").is_err());
        assert_eq!(spans(&[0, 2], 2, "x").unwrap(), vec![0..0, 0..2]);
    }
}
