//! The eval table as plain text (console) and Markdown/HTML rows (report),
//! one row per workflow, in the order given.

use super::metrics::EvalSummary;

pub const HEADERS: [&str; 13] = [
    "workflow",
    "n",
    "EM %",
    "SubEM %",
    "judge %",
    "EM free %",
    "EM req. %",
    "img search %",
    "txt search %",
    "search free %",
    "search req. %",
    "tool calls",
    "reward",
];

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

/// The cells of one row.
pub fn row(name: &str, s: &EvalSummary) -> Vec<String> {
    let o = &s.overall;
    vec![
        name.to_string(),
        o.questions.to_string(),
        pct(o.accuracy_em),
        pct(o.accuracy_subem),
        match (o.accuracy_judge, o.judge_failed) {
            (None, _) => "-".to_string(),
            (Some(a), 0) => pct(a),
            (Some(a), n) => format!("{} ({n} failed)", pct(a)),
        },
        pct(s.search_free.accuracy_em),
        pct(s.search_required.accuracy_em),
        pct(o.image_search_ratio),
        pct(o.text_search_ratio),
        pct(s.search_free.search_ratio),
        pct(s.search_required.search_ratio),
        format!("{:.2}", o.mean_tool_calls),
        format!("{:.3}", o.mean_reward),
    ]
}

/// A fixed-width text table.
pub fn render_text(rows: &[(String, EvalSummary)]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(|(n, s)| row(n, s)).collect();
    let widths: Vec<usize> = (0..HEADERS.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([HEADERS[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |r: &[String]| -> String {
        r.iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let header: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header);
    out.push('\n');
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
    out.push('\n');
    for r in &cells {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// A Markdown table (also readable as plain text in the report's HTML).
pub fn render_markdown(rows: &[(String, EvalSummary)]) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        HEADERS.join(" | "),
        "---|".repeat(HEADERS.len())
    );
    for (n, s) in rows {
        out.push_str(&format!("| {} |\n", row(n, s).join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::metrics::{Category, QuestionResult, summarize};
    use super::*;

    #[test]
    fn rows_line_up_and_show_percentages() {
        let results = vec![
            QuestionResult {
                category: Some(Category::SearchFree),
                exact_match: true,
                sub_em: true,
                ..Default::default()
            },
            QuestionResult {
                category: Some(Category::SearchRequired),
                image_searches: 1,
                ..Default::default()
            },
        ];
        let s = summarize(&results);
        let text = render_text(&[
            ("on-demand".into(), s.clone()),
            ("direct".into(), EvalSummary::default()),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].starts_with("on-demand"));
        assert!(lines[2].contains("50.0"), "{}", lines[2]);
        assert_eq!(lines[0].len(), lines[2].len());
        let md = render_markdown(&[("rl".into(), s)]);
        assert!(
            md.lines().nth(2).unwrap().starts_with("| rl | 2 | 50.0 |"),
            "{md}"
        );
    }
}
