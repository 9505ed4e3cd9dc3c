//! An eval's results so far, beside its report: `eval/<label>.partial.jsonl`,
//! a header line with what the eval computes, then one line per question,
//! appended a chunk at a time. `eval --resume` continues after the last
//! whole chunk; the finished report replaces the file.

use super::metrics::QuestionResult;
use crate::train::MetricsLog;
use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where a report's results so far are kept.
pub fn partial_path(report: &Path) -> PathBuf {
    report.with_extension("partial.jsonl")
}

#[derive(Serialize, Deserialize)]
struct Header {
    /// Hash of what decides every question's outcome (see [`fingerprint`]).
    eval_fingerprint: String,
}

/// Hashes `parts` (the workflow, model, dataset, question ids and the
/// settings the rollouts use, serialised): a resume under another of them
/// would mix two evals in one report.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The file, appended a chunk at a time (each line whole and flushed, as
/// the training log's).
pub struct PartialLog(MetricsLog);

impl PartialLog {
    /// A new file holding only the header (an old one is replaced).
    pub fn create(path: &Path, fingerprint: &str) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut log = MetricsLog::create(path)?;
        log.append(&Header {
            eval_fingerprint: fingerprint.into(),
        })?;
        Ok(Self(log))
    }

    /// Continues `path`: its results up to the last whole chunk of `chunk`
    /// questions (a killed run may have left part of one, or half a line);
    /// the file is cut back to them. Refused if it was written under
    /// another fingerprint or for other questions than `ids`.
    pub fn resume(
        path: &Path,
        fingerprint: &str,
        ids: &[String],
        chunk: usize,
    ) -> Result<(Self, Vec<QuestionResult>)> {
        let name = path.display();
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {name}"))?;
        let mut lines = text.split_inclusive('\n');
        let header = lines.next().filter(|l| l.ends_with('\n'));
        let parsed: Option<Header> = header.and_then(|l| serde_json::from_str(l).ok());
        let (Some(header), Some(parsed)) = (header, parsed) else {
            bail!("{name}: no header line; remove it to start the eval afresh");
        };
        ensure!(
            parsed.eval_fingerprint == fingerprint,
            "{name} was written by an eval of other settings, model, data or workflow; remove it, or pass another --label"
        );
        let mut results = Vec::new();
        let mut kept = vec![header.trim_end()];
        for (i, line) in lines.enumerate() {
            // A line cut short by a kill is where the file ends.
            if !line.ends_with('\n') {
                break;
            }
            let r: QuestionResult = serde_json::from_str(line)
                .with_context(|| format!("{name}: result line {} is not a result", i + 2))?;
            match ids.get(i) {
                Some(id) if *id == r.id => results.push(r),
                _ => bail!(
                    "{name}: result line {} is for question {:?}, not this eval's {:?}; remove it to start afresh",
                    i + 2,
                    r.id,
                    ids.get(i)
                ),
            }
            kept.push(line.trim_end());
        }
        if results.len() < ids.len() {
            results.truncate(results.len() / chunk * chunk);
        }
        kept.truncate(1 + results.len());
        Ok((Self(MetricsLog::rewrite(path, kept)?), results))
    }

    /// Appends `results`, one line each.
    pub fn append(&mut self, results: &[QuestionResult]) -> Result<()> {
        results.iter().try_for_each(|r| self.0.append(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn result(id: &str) -> QuestionResult {
        serde_json::from_value(serde_json::json!({
            "id": id, "data_source": "s", "category": null, "question": "q",
            "answer": "a", "golds": ["a"], "exact_match": true, "sub_em": true,
            "image_searches": 0, "text_searches": 0, "reward": 1.0, "format": 1.0,
        }))
        .unwrap()
    }

    #[test]
    fn a_resume_keeps_whole_chunks_and_refuses_another_eval() {
        let tmp = tempfile::tempdir().unwrap();
        let path = partial_path(&tmp.path().join("eval/rl.json"));
        assert!(path.ends_with("eval/rl.partial.jsonl"));
        let ids: Vec<String> = (0..5).map(|i| format!("q{i}")).collect();
        let mut log = PartialLog::create(&path, "abc").unwrap();
        log.append(&[result("q0"), result("q1"), result("q2")])
            .unwrap();
        drop(log);
        // Half a line of the fourth, as a kill leaves it.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"id\": \"q3\", \"da").unwrap();

        // Chunks of 2: q2 starts a chunk that did not finish.
        let (mut log, kept) = PartialLog::resume(&path, "abc", &ids, 2).unwrap();
        let kept: Vec<&str> = kept.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(kept, ["q0", "q1"]);
        log.append(&[result("q2"), result("q3")]).unwrap();
        let (_, kept) = PartialLog::resume(&path, "abc", &ids, 2).unwrap();
        assert_eq!(kept.len(), 4);
        // All questions done: kept whole even when the last chunk is short.
        let mut log = PartialLog::create(&path, "abc").unwrap();
        log.append(&ids.iter().map(|i| result(i)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(
            PartialLog::resume(&path, "abc", &ids, 2).unwrap().1.len(),
            5
        );

        let other = PartialLog::resume(&path, "xyz", &ids, 2).err().unwrap();
        assert!(format!("{other:#}").contains("other settings"), "{other:#}");
        let fewer = PartialLog::resume(&path, "abc", &ids[1..], 2)
            .err()
            .unwrap();
        assert!(
            format!("{fewer:#}").contains("for question \"q0\""),
            "{fewer:#}"
        );
        std::fs::write(&path, "not json\n").unwrap();
        let broken = PartialLog::resume(&path, "abc", &ids, 2).err().unwrap();
        assert!(
            format!("{broken:#}").contains("no header line"),
            "{broken:#}"
        );
    }
}
