//! `mmsr-host report RUN_DIR`: training curves from `metrics.jsonl` (in the
//! run dir or its immediate sub-runs), the eval table and figure from
//! `eval/*.json`, all written to `RUN_DIR/report/` as PNG, SVG and one HTML
//! page.

pub mod html;
pub mod metrics_log;
pub mod plots;

use crate::eval::EvalReport;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

pub const METRICS_FILE: &str = "metrics.jsonl";
/// Beside a run's metrics: its held-out validations (`[val]`), under the
/// same names.
pub const VAL_METRICS_FILE: &str = "val_metrics.jsonl";
/// Beside them: each validation's answers, as an eval report per step.
pub const VAL_RESULTS_DIR: &str = "val";
pub const EVAL_DIR: &str = "eval";
pub const REPORT_DIR: &str = "report";
/// Optional free text shown at the top of the page (the demo's evidence).
pub const NOTES_FILE: &str = "evidence.txt";

/// What `write_report` produced.
#[derive(Debug)]
pub struct ReportOutput {
    pub dir: PathBuf,
    pub html: PathBuf,
    pub files: Vec<PathBuf>,
}

/// Training runs in `run_dir`: the dir itself and each sub-dir that holds a
/// metrics log, as (name, path), sorted by name.
pub fn find_training_runs(run_dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let name_of = |p: &Path| {
        p.file_name()
            .map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned())
    };
    let mut runs = Vec::new();
    if run_dir.join(METRICS_FILE).is_file() {
        runs.push((name_of(run_dir), run_dir.join(METRICS_FILE)));
    }
    for entry in std::fs::read_dir(run_dir)
        .with_context(|| format!("reading run dir {}", run_dir.display()))?
    {
        let path = entry?.path();
        if path.is_dir() && path.join(METRICS_FILE).is_file() {
            runs.push((name_of(&path), path.join(METRICS_FILE)));
        }
    }
    runs.sort();
    Ok(runs)
}

/// The eval reports in `run_dir/eval/`, in file-name order.
pub fn find_evals(run_dir: &Path) -> anyhow::Result<Vec<EvalReport>> {
    json_files(&run_dir.join(EVAL_DIR))?
        .iter()
        .map(|p| EvalReport::load(p))
        .collect()
}

/// A run's latest validation report (`val/step-N.json`), if it keeps them.
fn latest_validation(run: &Path) -> anyhow::Result<Option<EvalReport>> {
    let mut paths = json_files(&run.join(VAL_RESULTS_DIR))?;
    // Zero-padded step numbers: the last name is the latest step.
    paths.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
    });
    paths.last().map(|p| EvalReport::load(p)).transpose()
}

/// The `.json` files in `dir`, sorted by name; none when it is not there.
fn json_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(vec![]);
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    Ok(paths)
}

fn read_svg(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // Inline SVG must not carry an XML prolog.
    Ok(match text.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or(text.clone(), |(_, body)| body.trim_start().to_string()),
        None => text,
    })
}

/// Writes `stem.png` and `stem.svg` of per-step panels into `out` (adding
/// both to `files`) and returns the page's figure.
fn write_curves(
    out: &Path,
    stem: &str,
    title: &str,
    panels: &[plots::Panel],
    caption: String,
    files: &mut Vec<PathBuf>,
) -> anyhow::Result<html::Figure> {
    plots::write_training(out, stem, title, panels)?;
    let (png, svg) = (format!("{stem}.png"), format!("{stem}.svg"));
    files.extend([out.join(&png), out.join(&svg)]);
    Ok(html::Figure {
        caption,
        svg: read_svg(&out.join(&svg))?,
        png_name: png,
    })
}

/// Writes the report for `run_dir`; fails if it holds nothing to report.
pub fn write_report(run_dir: &Path) -> anyhow::Result<ReportOutput> {
    let runs = find_training_runs(run_dir)?;
    let evals = find_evals(run_dir)?;
    if runs.is_empty() && evals.is_empty() {
        bail!(
            "{} holds nothing to report: no {METRICS_FILE} in it or its sub-dirs, and no {EVAL_DIR}/*.json",
            run_dir.display()
        );
    }
    // Every log is read before the report dir is made: a broken one leaves
    // no empty report behind.
    let logs = runs
        .iter()
        .map(|(name, path)| Ok((name, path, metrics_log::read(path)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let val_logs = runs
        .iter()
        .filter_map(|(name, path)| {
            let val = path.with_file_name(VAL_METRICS_FILE);
            val.is_file()
                .then(|| Ok((name, val.clone(), metrics_log::read(&val)?)))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let validations = runs
        .iter()
        .filter_map(|(name, path)| {
            let run = path.parent()?;
            latest_validation(run)
                .map(|v| {
                    v.map(|mut v| {
                        v.label = format!("{name}: {}", v.label);
                        v
                    })
                })
                .transpose()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let out = run_dir.join(REPORT_DIR);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = Vec::new();
    let mut training = Vec::new();
    for (name, path, records) in logs {
        let panels = plots::training_panels(&records);
        if panels.is_empty() {
            tracing::warn!(file = %path.display(), "no known series (reward, accuracy, search ratio, loss) to plot");
            continue;
        }
        training.push(write_curves(
            &out,
            &format!("training-{name}"),
            &format!("{name}: per-step training metrics"),
            &panels,
            format!("{name}: {} steps from {}", records.len(), path.display()),
            &mut files,
        )?);
    }
    for (name, path, records) in val_logs {
        training.push(write_curves(
            &out,
            &format!("validation-{name}"),
            &format!("{name}: held-out validation (greedy, on-demand)"),
            &plots::training_panels(&records),
            format!(
                "{name}: {} validations (step {}–{}) from {}",
                records.len(),
                records.first().map_or(0.0, |r| r.step),
                records.last().map_or(0.0, |r| r.step),
                path.display()
            ),
            &mut files,
        )?);
    }
    let eval_figure = if evals.is_empty() {
        None
    } else {
        let rows: Vec<plots::EvalRow> = evals
            .iter()
            .map(|e| (e.label.clone(), e.summary.clone()))
            .collect();
        plots::write_eval(&out, &rows)?;
        files.extend([out.join("eval.png"), out.join("eval.svg")]);
        Some(html::Figure {
            caption: "Accuracy (EM) and search ratio on search-free and search-required questions"
                .into(),
            svg: read_svg(&out.join("eval.svg"))?,
            png_name: "eval.png".into(),
        })
    };
    let notes_path = run_dir.join(NOTES_FILE);
    let notes = if notes_path.is_file() {
        let text = std::fs::read_to_string(&notes_path)
            .with_context(|| format!("reading {}", notes_path.display()))?;
        vec![("Evidence".to_string(), text)]
    } else {
        vec![]
    };
    let title = format!(
        "mmsr report: {}",
        run_dir.file_name().map_or_else(
            || run_dir.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
    );
    let page = html::render(&html::Page {
        title,
        training,
        eval_figure,
        evals: &evals,
        validations: &validations,
        notes,
        examples_per_workflow: 5,
    });
    let html_path = out.join("index.html");
    std::fs::write(&html_path, page).with_context(|| format!("writing {}", html_path.display()))?;
    files.push(html_path.clone());
    Ok(ReportOutput {
        dir: out,
        html: html_path,
        files,
    })
}

#[cfg(test)]
mod tests;
