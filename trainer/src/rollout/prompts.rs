//! The prompt templates (minijinja), from a folder users can swap, or the
//! built-in copies of `configs/prompts/`.

use anyhow::{Context, Result};
use minijinja::{Environment, context};
use std::path::Path;

/// Template names; each is a file `<name>.txt` in the prompts folder.
pub const FIRST_TURN: &str = "first_turn";
pub const AFTER_IMAGE_SEARCH: &str = "after_image_search";
pub const AFTER_TEXT_SEARCH: &str = "after_text_search";
pub const SEARCH_ERROR: &str = "search_error";
/// The eval's direct workflow: a first turn without search instructions,
/// and the reply to a search the model asks for anyway.
pub const DIRECT_FIRST_TURN: &str = "direct_first_turn";
pub const SEARCH_UNAVAILABLE: &str = "search_unavailable";
/// Templates a prompt folder needs only for the workflows that use them.
const OPTIONAL: [&str; 2] = [DIRECT_FIRST_TURN, SEARCH_UNAVAILABLE];
const NAMES: [&str; 4] = [
    FIRST_TURN,
    AFTER_IMAGE_SEARCH,
    AFTER_TEXT_SEARCH,
    SEARCH_ERROR,
];

const BUILTIN: [(&str, &str); 6] = [
    (
        FIRST_TURN,
        include_str!("../../../configs/prompts/first_turn.txt"),
    ),
    (
        AFTER_IMAGE_SEARCH,
        include_str!("../../../configs/prompts/after_image_search.txt"),
    ),
    (
        AFTER_TEXT_SEARCH,
        include_str!("../../../configs/prompts/after_text_search.txt"),
    ),
    (
        SEARCH_ERROR,
        include_str!("../../../configs/prompts/search_error.txt"),
    ),
    (
        DIRECT_FIRST_TURN,
        include_str!("../../../configs/prompts/direct_first_turn.txt"),
    ),
    (
        SEARCH_UNAVAILABLE,
        include_str!("../../../configs/prompts/search_unavailable.txt"),
    ),
];

pub struct Prompts {
    env: Environment<'static>,
    /// The folder the templates came from (`None`: built in), for errors.
    dir: Option<std::path::PathBuf>,
}

impl Prompts {
    pub fn builtin() -> Self {
        let mut env = Environment::new();
        for (name, text) in BUILTIN {
            env.add_template_owned(name.to_string(), text.trim_end().to_string())
                .expect("built-in prompt parses");
        }
        Self { env, dir: None }
    }

    /// Reads `<name>.txt` for every template from `dir`; the optional ones
    /// (the direct workflow's) only if present.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for name in NAMES {
            let path = dir.join(format!("{name}.txt"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read prompt {}", path.display()))?;
            env.add_template_owned(name.to_string(), text.trim_end().to_string())
                .with_context(|| format!("prompt {} is not a valid template", path.display()))?;
        }
        for name in OPTIONAL {
            let path = dir.join(format!("{name}.txt"));
            if !path.exists() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read prompt {}", path.display()))?;
            env.add_template_owned(name.to_string(), text.trim_end().to_string())
                .with_context(|| format!("prompt {} is not a valid template", path.display()))?;
            env.get_template(name)?
                .render(context! { question => "q" })
                .with_context(|| format!("prompt {}", path.display()))?;
        }
        let prompts = Self {
            env,
            dir: Some(dir.to_path_buf()),
        };
        // Render once so a template using an unknown variable fails at start.
        prompts
            .first_turn("q", 3)
            .and_then(|_| prompts.after_search(true, "q"))
            .and_then(|_| prompts.after_search(false, "q"))
            .and_then(|_| prompts.search_error("e"))
            .with_context(|| format!("prompts in {}", dir.display()))?;
        // A first turn that renders but drops the question trains on nothing.
        const Q: &str = "\u{E000}question\u{E001}";
        let mut first = vec![(FIRST_TURN, prompts.first_turn(Q, 3)?)];
        if prompts.env.get_template(DIRECT_FIRST_TURN).is_ok() {
            first.push((DIRECT_FIRST_TURN, prompts.direct_first_turn(Q)?));
        }
        for (name, text) in first {
            anyhow::ensure!(
                text.contains(Q),
                "prompt {} never writes {{{{ question }}}}: the model would not see the question",
                dir.join(format!("{name}.txt")).display()
            );
        }
        Ok(prompts)
    }

    /// `dir` empty means the built-in prompts.
    pub fn load(dir: &str) -> Result<Self> {
        if dir.is_empty() {
            Ok(Self::builtin())
        } else {
            Self::from_dir(Path::new(dir))
        }
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String> {
        let template = self
            .env
            .get_template(name)
            .with_context(|| match &self.dir {
                Some(dir) => format!(
                    "prompt {} is missing",
                    dir.join(format!("{name}.txt")).display()
                ),
                None => format!("no built-in prompt `{name}`"),
            })?;
        template
            .render(ctx)
            .with_context(|| format!("rendering prompt `{name}`"))
    }

    pub fn first_turn(&self, question: &str, max_rounds: usize) -> Result<String> {
        self.render(FIRST_TURN, context! { question, max_rounds })
    }

    pub fn after_search(&self, image: bool, question: &str) -> Result<String> {
        self.render(
            if image {
                AFTER_IMAGE_SEARCH
            } else {
                AFTER_TEXT_SEARCH
            },
            context! { question },
        )
    }

    pub fn search_error(&self, error: &str) -> Result<String> {
        self.render(SEARCH_ERROR, context! { error })
    }

    /// The direct workflow's first turn: the question, no search offered.
    pub fn direct_first_turn(&self, question: &str) -> Result<String> {
        self.render(DIRECT_FIRST_TURN, context! { question })
    }

    /// The reply when a model searches where no search is offered.
    pub fn search_unavailable(&self, question: &str) -> Result<String> {
        self.render(SEARCH_UNAVAILABLE, context! { question })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_prompts_hold_the_question_and_the_tags() {
        let p = Prompts::builtin();
        let first = p.first_turn("Who built this?", 3).unwrap();
        assert!(first.ends_with("Question: Who built this?"));
        for tag in [
            "<reason>",
            "<answer>",
            "<search><img></search>",
            "<text_search>",
        ] {
            assert!(first.contains(tag), "{tag}");
        }
        assert!(p.after_search(true, "Q?").unwrap().contains("Question: Q?"));
        assert!(p.search_error("timeout").unwrap().contains("(timeout)"));
    }

    #[test]
    fn a_prompt_folder_is_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let err = Prompts::from_dir(dir.path()).err().unwrap().to_string();
        assert!(err.contains("first_turn.txt"), "{err}");
        for name in NAMES {
            std::fs::write(dir.path().join(format!("{name}.txt")), "Q: {{ question }}").unwrap();
        }
        // search_error has no `question` variable: strict mode names it.
        let err = format!("{:#}", Prompts::from_dir(dir.path()).err().unwrap());
        assert!(
            err.contains("search_error") || err.contains("undefined"),
            "{err}"
        );
        std::fs::write(dir.path().join("search_error.txt"), "E: {{ error }}").unwrap();
        let p = Prompts::from_dir(dir.path()).unwrap();
        assert_eq!(p.first_turn("x", 3).unwrap(), "Q: x");
        // The direct workflow's prompts are optional, and named when missing.
        let err = format!("{:#}", p.direct_first_turn("x").unwrap_err());
        assert!(err.contains("direct_first_turn.txt is missing"), "{err}");
        std::fs::write(
            dir.path().join("direct_first_turn.txt"),
            "D: {{ question }}",
        )
        .unwrap();
        std::fs::write(dir.path().join("search_unavailable.txt"), "{{ error }}").unwrap();
        let err = format!("{:#}", Prompts::from_dir(dir.path()).err().unwrap());
        assert!(err.contains("search_unavailable.txt"), "{err}");
        std::fs::write(
            dir.path().join("search_unavailable.txt"),
            "U: {{ question }}",
        )
        .unwrap();
        let p = Prompts::from_dir(dir.path()).unwrap();
        assert_eq!(p.direct_first_turn("x").unwrap(), "D: x");
        assert_eq!(p.search_unavailable("y").unwrap(), "U: y");
        std::fs::write(dir.path().join("first_turn.txt"), "{{ question").unwrap();
        assert!(Prompts::from_dir(dir.path()).is_err());
        for name in [FIRST_TURN, DIRECT_FIRST_TURN] {
            std::fs::write(dir.path().join("first_turn.txt"), "Q: {{ question }}").unwrap();
            std::fs::write(
                dir.path().join("direct_first_turn.txt"),
                "D: {{ question }}",
            )
            .unwrap();
            std::fs::write(dir.path().join(format!("{name}.txt")), "Answer please.").unwrap();
            let err = format!("{:#}", Prompts::from_dir(dir.path()).err().unwrap());
            assert!(
                err.contains(&format!("{name}.txt never writes {{{{ question }}}}")),
                "{err}"
            );
        }
    }

    #[test]
    fn shipped_prompt_folders_have_the_direct_workflow() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        // The demo's tiny model learns the tags from SFT, so its prompts
        // are short and name none; a real model's must name the answer tag.
        for (dir, names_tags) in [
            (root.join("prompts"), true),
            (root.join("demo/prompts"), false),
        ] {
            let p = Prompts::from_dir(&dir).unwrap();
            let direct = p.direct_first_turn("Q?").unwrap();
            assert!(direct.contains("Q?"), "{direct}");
            assert!(!names_tags || direct.contains("<answer>"), "{direct}");
            assert!(
                !direct.contains("<text_search>") && !direct.contains("<search>"),
                "no search offered: {direct}"
            );
            assert!(p.search_unavailable("Q?").unwrap().contains("Q?"));
        }
    }
}
