//! The report page: one self-contained HTML file with the figures inlined
//! as SVG, the eval table, and a few trajectories per workflow.

use crate::eval::{EvalReport, table};

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A figure: its SVG text (inlined) and the PNG next to the page.
pub struct Figure {
    pub caption: String,
    pub svg: String,
    pub png_name: String,
}

pub struct Page<'a> {
    pub title: String,
    pub training: Vec<Figure>,
    pub eval_figure: Option<Figure>,
    pub evals: &'a [EvalReport],
    /// Extra sections (heading, preformatted text), e.g. the demo's evidence.
    pub notes: Vec<(String, String)>,
    pub examples_per_workflow: usize,
    /// Each training run's latest validation, for its examples.
    pub validations: &'a [EvalReport],
}

fn figure(f: &Figure) -> String {
    // The SVG backend writes no XML prolog, so the file inlines as is.
    format!(
        "<figure>{}<figcaption>{} (<a href=\"{}\">PNG</a>)</figcaption></figure>\n",
        f.svg,
        escape(&f.caption),
        escape(&f.png_name)
    )
}

fn eval_table(evals: &[EvalReport]) -> String {
    let mut out = String::from("<table>\n<tr>");
    for h in table::HEADERS {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr>\n");
    for e in evals {
        out.push_str("<tr>");
        for cell in table::row(&e.label, &e.summary) {
            out.push_str(&format!("<td>{}</td>", escape(&cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

fn examples(e: &EvalReport, n: usize) -> String {
    let mut out = format!(
        "<h3>{} <small>({} on {})</small></h3>\n",
        escape(&e.label),
        escape(&e.workflow),
        escape(&e.dataset)
    );
    for r in e.results.iter().take(n) {
        let verdict = if r.exact_match { "correct" } else { "wrong" };
        out.push_str(&format!(
            "<details><summary>{} — {} — gold: {} — {verdict}, {} image / {} text searches</summary><pre>{}</pre></details>\n",
            escape(&r.id),
            escape(&r.question),
            escape(r.golds.first().map_or("", String::as_str)),
            r.image_searches,
            r.text_searches,
            escape(&conversation(&r.turns, &r.observations))
        ));
    }
    out
}

/// The assistant turns with what each search showed in between: every turn
/// but the last searched, and its results came back before the next.
fn conversation(turns: &[String], observations: &[String]) -> String {
    let mut out = String::new();
    for (i, turn) in turns.iter().enumerate() {
        if i > 0 {
            out.push_str("\n— next turn —\n");
        }
        out.push_str(turn);
        if let Some(obs) = observations.get(i) {
            out.push_str("\n— search results —\n");
            out.push_str(obs);
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}figure{margin:1em 0}svg{max-width:100%;height:auto}\
pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}";

pub fn render(page: &Page) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\n<body>\n<h1>{}</h1>\n",
        escape(&page.title),
        escape(&page.title)
    );
    for (heading, text) in &page.notes {
        out.push_str(&format!(
            "<h2>{}</h2>\n<pre>{}</pre>\n",
            escape(heading),
            escape(text)
        ));
    }
    if !page.training.is_empty() {
        out.push_str("<h2>Training</h2>\n");
        for f in &page.training {
            out.push_str(&figure(f));
        }
    }
    if !page.evals.is_empty() {
        out.push_str("<h2>Evaluation</h2>\n");
        out.push_str(&eval_table(page.evals));
        if let Some(f) = &page.eval_figure {
            out.push_str(&figure(f));
        }
    }
    if !page.evals.is_empty() || !page.validations.is_empty() {
        out.push_str("<h2>Example trajectories</h2>\n");
        for e in page.evals.iter().chain(page.validations) {
            out.push_str(&examples(e, page.examples_per_workflow));
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::QuestionResult;

    #[test]
    fn model_text_is_escaped_not_rendered() {
        let r = QuestionResult {
            id: "q1".into(),
            question: "What?".into(),
            golds: vec!["<b>x</b>".into()],
            turns: vec![
                "<search><img></search>".into(),
                "<reason>hm</reason><answer>x</answer>".into(),
            ],
            observations: vec!["1. <i>Vorlak</i> <image>".into()],
            ..Default::default()
        };
        let e = EvalReport::new("rl", "on-demand", "m", "d", vec![r]);
        let html = render(&Page {
            title: "t".into(),
            training: vec![],
            eval_figure: None,
            evals: std::slice::from_ref(&e),
            notes: vec![("Evidence".into(), "a < b".into())],
            validations: &[],
            examples_per_workflow: 3,
        });
        assert!(html.contains("&lt;reason&gt;hm&lt;/reason&gt;"));
        assert!(!html.contains("<reason>"));
        // The results sit between the search and the next turn.
        assert!(html.contains(
            "&lt;search&gt;&lt;img&gt;&lt;/search&gt;\n— search results —\n\
             1. &lt;i&gt;Vorlak&lt;/i&gt; &lt;image&gt;\n— next turn —\n&lt;reason&gt;"
        ));
        assert!(html.contains("a &lt; b"));
        assert!(html.contains("<td>rl</td><td>1</td>"));
    }
}
