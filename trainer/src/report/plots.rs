//! The report's figures, drawn once per backend so the PNG and the SVG are
//! the same picture: training curves per step (reward, accuracy, search
//! ratios, like the paper's Figure 5(b)) and the eval comparison.
//!
//! PNG text needs a font at run time. A fresh CI machine may have none, so
//! DejaVu Sans is compiled in (the `dejavu` crate) and registered with
//! plotters' `ab_glyph` renderer; the SVG names the family and lets the
//! viewer draw the text.

use super::metrics_log::{StepRecord, series};
use crate::eval::EvalSummary;
use anyhow::{Context, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

const FONT: &str = "sans-serif";
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn ensure_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    ok.then_some(())
        .ok_or_else(|| anyhow!("the bundled DejaVu Sans font did not load"))
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing: {e}")
}

/// A panel: a title, a y range, and named series looked up by aliases.
pub struct PanelSpec {
    pub title: &'static str,
    pub y_range: Option<(f64, f64)>,
    pub series: &'static [(&'static str, &'static [&'static str])],
}

/// The training panels. Aliases cover the names a trainer may log.
pub const TRAINING_PANELS: [PanelSpec; 4] = [
    PanelSpec {
        title: "reward",
        y_range: None,
        series: &[
            ("reward", &["reward", "reward/mean", "reward_mean"]),
            ("format", &["format", "format/mean", "format_score"]),
        ],
    },
    PanelSpec {
        title: "accuracy",
        y_range: Some((0.0, 1.0)),
        series: &[("accuracy", &["accuracy", "accuracy/mean", "acc"])],
    },
    PanelSpec {
        title: "search ratio",
        y_range: Some((0.0, 1.0)),
        series: &[
            (
                "image search",
                &["image_search_ratio", "search/image_ratio", "search/image"],
            ),
            (
                "text search",
                &["text_search_ratio", "search/text_ratio", "search/text"],
            ),
            (
                "any search",
                &["search_ratio", "search/ratio", "search/any"],
            ),
        ],
    },
    PanelSpec {
        title: "loss",
        y_range: None,
        series: &[("loss", &["loss", "sft/loss", "train/loss"])],
    },
];

/// A panel with data: its title, y range and (label, points) lines.
pub struct Panel {
    pub title: String,
    pub y_range: (f64, f64),
    pub lines: Vec<(String, Vec<(f64, f64)>)>,
}

/// The panels of `records` that have data, in `TRAINING_PANELS` order, with
/// the search ratio per data source (`by_source/<source>/search_ratio`)
/// after the overall one when the log has it.
pub fn training_panels(records: &[StepRecord]) -> Vec<Panel> {
    let mut panels = static_panels(records);
    let sources: std::collections::BTreeSet<&str> = records
        .iter()
        .flat_map(|r| r.values.keys())
        .filter_map(|k| k.strip_prefix("by_source/")?.strip_suffix("/search_ratio"))
        .collect();
    let lines: Vec<(String, Vec<(f64, f64)>)> = sources
        .into_iter()
        .filter_map(|src| {
            let key = format!("by_source/{src}/search_ratio");
            series(records, &[key.as_str()]).map(|(_, pts)| (src.to_string(), pts))
        })
        .collect();
    if !lines.is_empty() {
        let at = panels
            .iter()
            .position(|p| p.title == "search ratio")
            .map_or(panels.len(), |i| i + 1);
        panels.insert(
            at,
            Panel {
                title: "search ratio by data source".into(),
                y_range: (0.0, 1.0),
                lines,
            },
        );
    }
    panels
}

fn static_panels(records: &[StepRecord]) -> Vec<Panel> {
    TRAINING_PANELS
        .iter()
        .filter_map(|spec| {
            let lines: Vec<(String, Vec<(f64, f64)>)> = spec
                .series
                .iter()
                .filter_map(|(label, aliases)| {
                    series(records, aliases).map(|(_, pts)| (label.to_string(), pts))
                })
                .collect();
            if lines.is_empty() {
                return None;
            }
            let y_range = spec.y_range.unwrap_or_else(|| {
                let ys = lines.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y));
                let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| {
                    (l.min(y), h.max(y))
                });
                let pad = ((hi - lo) * 0.08).max(1e-3);
                (lo - pad, hi + pad)
            });
            Some(Panel {
                title: spec.title.to_string(),
                y_range,
                lines,
            })
        })
        .collect()
}

/// Running mean over `window` points, for noisy per-step curves.
pub fn running_mean(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(points.len());
    let mut sum = 0.0;
    for (i, &(x, y)) in points.iter().enumerate() {
        sum += y;
        if i >= window {
            sum -= points[i - window].1;
        }
        out.push((x, sum / (i + 1).min(window) as f64));
    }
    out
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> anyhow::Result<()> {
    let xs = panel
        .lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x));
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
        (l.min(x), h.max(x))
    });
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 18))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(x0..x1, panel.y_range.0..panel.y_range.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|x: &f64| format!("{x:.0}"))
        .y_label_formatter(&|y: &f64| format!("{y:.2}"))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    for (i, (label, points)) in panel.lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let smoothed = points.len() >= 20;
        let raw_style = if smoothed {
            colour.mix(0.3).stroke_width(1)
        } else {
            colour.stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(points.iter().copied(), raw_style))
            .map_err(err)?;
        let series = if smoothed {
            chart.draw_series(LineSeries::new(
                running_mean(points, points.len() / 10),
                colour.stroke_width(2),
            ))
        } else {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
        }
        .map_err(err)?;
        series.label(label.as_str()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
        });
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    Ok(())
}

fn draw_training<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, (FONT, 22)).map_err(err)?;
    for (area, panel) in root
        .split_evenly((1, panels.len().max(1)))
        .iter()
        .zip(panels)
    {
        draw_panel(area, panel)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// One eval figure row: a workflow and its summary.
pub type EvalRow = (String, EvalSummary);

/// Grouped bars: `groups` (name, value-of-summary) for every workflow.
fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    rows: &[EvalRow],
    groups: &[(&str, Metric)],
) -> anyhow::Result<()> {
    let n = rows.len().max(1) as f64;
    let labels: Vec<String> = rows.iter().map(|(l, _)| l.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(48)
        // Headroom above 100 % keeps the legend clear of full bars.
        .build_cartesian_2d(-0.5..n - 0.5, 0.0..125.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len().max(1))
        .x_label_formatter(&|x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("%")
        .y_label_formatter(&|y: &f64| {
            if *y <= 100.0 {
                format!("{y:.0}")
            } else {
                String::new()
            }
        })
        .light_line_style(WHITE.mix(0.0))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(err)?;
    let width = 0.8 / groups.len() as f64;
    for (g, (name, value)) in groups.iter().enumerate() {
        let colour = COLOURS[g % COLOURS.len()];
        let bars = rows.iter().enumerate().map(|(i, (_, s))| {
            let left = i as f64 - 0.4 + g as f64 * width;
            Rectangle::new(
                [(left, 0.0), (left + width * 0.9, 100.0 * value(s))],
                colour.filled(),
            )
        });
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperMiddle)
        .draw()
        .map_err(err)?;
    Ok(())
}

type Metric = fn(&EvalSummary) -> f64;
const ACCURACY_GROUPS: [(&str, Metric); 3] = [
    ("all", |s| s.overall.accuracy_em),
    ("search-free", |s| s.search_free.accuracy_em),
    ("search-required", |s| s.search_required.accuracy_em),
];
const SEARCH_GROUPS: [(&str, Metric); 3] = [
    ("all", |s| s.overall.search_ratio),
    ("search-free", |s| s.search_free.search_ratio),
    ("search-required", |s| s.search_required.search_ratio),
];

fn draw_eval<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    rows: &[EvalRow],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled("Held-out evaluation by workflow", (FONT, 22))
        .map_err(err)?;
    let areas = root.split_evenly((1, 2));
    draw_bars(&areas[0], "accuracy (EM)", rows, &ACCURACY_GROUPS)?;
    draw_bars(&areas[1], "search ratio", rows, &SEARCH_GROUPS)?;
    root.present().map_err(err)?;
    Ok(())
}

pub const TRAINING_SIZE: (u32, u32) = (1400, 420);
pub const EVAL_SIZE: (u32, u32) = (1200, 440);

/// Writes `<stem>.png` and `<stem>.svg` of the training curves into `dir`.
pub fn write_training(dir: &Path, stem: &str, title: &str, panels: &[Panel]) -> anyhow::Result<()> {
    ensure_font()?;
    write_png(&dir.join(format!("{stem}.png")), TRAINING_SIZE, |area| {
        draw_training(area, title, panels)
    })?;
    let svg = dir.join(format!("{stem}.svg"));
    draw_training(
        SVGBackend::new(&svg, TRAINING_SIZE).into_drawing_area(),
        title,
        panels,
    )
}

/// Draws into an RGB buffer and encodes it with `image`, so plotters needs
/// no encoder of its own (that would build a second, older `image`).
fn write_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    draw(BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area())?;
    image::RgbImage::from_raw(size.0, size.1, rgb)
        .context("plot buffer of the wrong size")?
        .save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes `eval.png` and `eval.svg` into `dir`.
pub fn write_eval(dir: &Path, rows: &[EvalRow]) -> anyhow::Result<()> {
    ensure_font()?;
    write_png(&dir.join("eval.png"), EVAL_SIZE, |area| {
        draw_eval(area, rows)
    })?;
    draw_eval(
        SVGBackend::new(&dir.join("eval.svg"), EVAL_SIZE).into_drawing_area(),
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_mean_averages_the_trailing_window() {
        let pts: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, i as f64)).collect();
        let m = running_mean(&pts, 2);
        assert_eq!(
            m.iter().map(|p| p.1).collect::<Vec<_>>(),
            vec![0.0, 0.5, 1.5, 2.5, 3.5]
        );
    }

    #[test]
    fn panels_without_data_are_left_out() {
        let recs = super::super::metrics_log::parse(
            "{\"step\":0,\"reward\":0.2}\n{\"step\":1,\"reward\":0.4}\n",
            "m",
        )
        .unwrap();
        let panels = training_panels(&recs);
        assert_eq!(panels.len(), 1);
        assert_eq!(panels[0].title, "reward");
        let (lo, hi) = panels[0].y_range;
        assert!(lo < 0.2 && hi > 0.4);
    }

    #[test]
    fn search_ratio_per_source_gets_its_panel_after_the_overall_one() {
        let line = |step: u32, free: f64, req: f64| {
            format!(
                "{{\"step\":{step},\"search\":{{\"ratio\":0.5}},\"by_source\":{{\
                 \"demo/free\":{{\"search_ratio\":{free},\"reward\":1}},\
                 \"demo/req\":{{\"search_ratio\":{req}}}}}}}\n"
            )
        };
        let text = line(1, 0.1, 0.9) + &line(2, 0.2, 0.8);
        let recs = super::super::metrics_log::parse(&text, "m").unwrap();
        let panels = training_panels(&recs);
        let titles: Vec<&str> = panels.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["search ratio", "search ratio by data source"]);
        let lines = &panels[1].lines;
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            ("demo/free".to_string(), vec![(1.0, 0.1), (2.0, 0.2)])
        );
        assert_eq!(lines[1].1, vec![(1.0, 0.9), (2.0, 0.8)]);
    }
}
