//! The tokenizer (`tokenizer.json` through the `tokenizers` crate) and the
//! model's own chat template rendered with minijinja the way transformers'
//! `apply_chat_template` does (trim_blocks, lstrip_blocks, loop controls,
//! `raise_exception`). Turns are rendered incrementally: a new turn's text is
//! the difference between the renders with and without it.

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// A piece of a rendered user message.
#[derive(Clone, Debug)]
pub enum Part {
    Text(String),
    Image,
}

/// Files that make up a tokenizer, copied on export when present.
pub const TOKENIZER_FILES: [&str; 7] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
];

pub struct ChatTokenizer {
    tokenizer: Tokenizer,
    env: minijinja::Environment<'static>,
    /// `bos_token`, `eos_token`, … from tokenizer_config.json, for templates.
    special: serde_json::Map<String, Value>,
    pub im_end: i64,
    pub pad: i64,
    /// Special tokens' text (`<|im_end|>`, …), which [`Self::defuse`]
    /// breaks up in outside text.
    specials: Vec<String>,
    /// The generation prompt, e.g. `<|im_start|>assistant\n`.
    pub gen_prompt: String,
    /// What the template writes after an assistant message, e.g. `<|im_end|>\n`.
    pub closer: String,
    pub files: Vec<PathBuf>,
}

const SENTINEL: &str = "\u{E000}mmsr-assistant-content\u{E001}";

fn template_source(dir: &Path) -> Result<String> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja)
            .with_context(|| format!("reading {}", jinja.display()));
    }
    let json_file = dir.join("chat_template.json");
    if json_file.exists() {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&json_file)?)
            .with_context(|| format!("parsing {}", json_file.display()))?;
        return v
            .get("chat_template")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{}: no chat_template string", json_file.display()));
    }
    let cfg = dir.join("tokenizer_config.json");
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(&cfg).with_context(|| format!("reading {}", cfg.display()))?,
    )
    .with_context(|| format!("parsing {}", cfg.display()))?;
    match v.get("chat_template") {
        Some(Value::String(s)) => Ok(s.clone()),
        // A list of named templates: take "default".
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template").and_then(Value::as_str))
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{}: no chat_template named \"default\"", cfg.display())),
        _ => bail!(
            "{}: no chat_template (nor chat_template.jinja / chat_template.json)",
            cfg.display()
        ),
    }
}

fn special_tokens(dir: &Path) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let Ok(text) = std::fs::read_to_string(dir.join("tokenizer_config.json")) else {
        return out;
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return out;
    };
    for key in ["bos_token", "eos_token", "pad_token", "unk_token"] {
        let tok = match v.get(key) {
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(Value::Object(o)) => o.get("content").cloned().unwrap_or(Value::Null),
            _ => continue,
        };
        out.insert(key.into(), tok);
    }
    out
}

impl ChatTokenizer {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let tokenizer =
            Tokenizer::from_file(&path).map_err(|e| anyhow!("loading {}: {e}", path.display()))?;
        let source = template_source(dir)?;
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<(), minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", source)
            .map_err(|e| anyhow!("chat template of {}: {e}", dir.display()))?;
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .map(i64::from)
                .ok_or_else(|| anyhow!("{}: tokenizer has no token {t}", path.display()))
        };
        let im_end = id("<|im_end|>")?;
        let pad = id("<|endoftext|>").unwrap_or(im_end);
        let files = TOKENIZER_FILES
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| p.exists())
            .collect();
        let mut specials: Vec<String> = tokenizer
            .get_added_tokens_decoder()
            .into_values()
            .filter(|t| t.special && !t.content.is_empty())
            .map(|t| t.content)
            .collect();
        specials.sort();
        let mut me = Self {
            tokenizer,
            env,
            specials,
            special: special_tokens(dir),
            im_end,
            pad,
            gen_prompt: String::new(),
            closer: String::new(),
            files,
        };
        me.learn_framing()
            .with_context(|| format!("chat template of {}", dir.display()))?;
        Ok(me)
    }

    /// Finds the template's generation prompt and assistant closer.
    fn learn_framing(&mut self) -> Result<()> {
        let user = Self::user_message(&[Part::Text("x".into())]);
        let base = self.render(std::slice::from_ref(&user), false)?;
        let prompted = self.render(std::slice::from_ref(&user), true)?;
        let gen_prompt = prompted
            .strip_prefix(&base)
            .ok_or_else(|| anyhow!("add_generation_prompt does not append to the conversation"))?;
        ensure!(!gen_prompt.is_empty(), "add_generation_prompt adds nothing");
        let with = self.render(&[user, Self::assistant_message(SENTINEL)], false)?;
        let at = with
            .find(SENTINEL)
            .ok_or_else(|| anyhow!("the template drops assistant content"))?;
        ensure!(
            with[..at].strip_prefix(&base) == Some(gen_prompt),
            "an assistant message is not framed by the generation prompt"
        );
        let closer = &with[at + SENTINEL.len()..];
        let ids = self.encode(closer)?;
        ensure!(
            ids.first() == Some(&self.im_end),
            "an assistant message does not end with <|im_end|> (ends with {closer:?})"
        );
        self.gen_prompt = gen_prompt.to_string();
        self.closer = closer.to_string();
        Ok(())
    }

    pub fn user_message(parts: &[Part]) -> Value {
        let content: Vec<Value> = parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => json!({"type": "text", "text": t}),
                Part::Image => json!({"type": "image"}),
            })
            .collect();
        json!({"role": "user", "content": content})
    }

    pub fn assistant_message(text: &str) -> Value {
        json!({"role": "assistant", "content": text})
    }

    pub fn render(&self, messages: &[Value], add_generation_prompt: bool) -> Result<String> {
        let mut ctx = self.special.clone();
        ctx.insert("messages".into(), Value::Array(messages.to_vec()));
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        let tmpl = self.env.get_template("chat").expect("added in from_dir");
        tmpl.render(minijinja::Value::from_serialize(&ctx))
            .map_err(|e| anyhow!("rendering the chat template: {e:#}"))
    }

    /// Text a new message adds to a conversation.
    pub fn render_delta(&self, before: &[Value], message: Value) -> Result<String> {
        let old = self.render(before, false)?;
        let mut all = before.to_vec();
        all.push(message);
        let new = self.render(&all, false)?;
        new.strip_prefix(&old).map(str::to_string).ok_or_else(|| {
            anyhow!("the chat template re-renders earlier turns differently when a turn is added")
        })
    }

    /// Text from outside (a search result, a page) with every special
    /// token's spelling broken by a word joiner after its first character,
    /// so it tokenizes as text: a page that spells `<|im_end|>` cannot end
    /// the turn or open a fake one, and a `<|image_pad|>` adds no image slot.
    pub fn defuse<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut out = std::borrow::Cow::Borrowed(text);
        for s in &self.specials {
            if out.contains(s.as_str()) {
                let first = s.chars().next().map_or(0, char::len_utf8);
                let broken = format!("{}\u{2060}{}", &s[..first], &s[first..]);
                out = std::borrow::Cow::Owned(out.replace(s.as_str(), &broken));
            }
        }
        out
    }

    /// Ids of `text`, special tokens parsed, nothing added around it.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    pub fn decode(&self, ids: &[i64], skip_special: bool) -> Result<String> {
        let ids: Vec<u32> = ids
            .iter()
            .map(|&i| u32::try_from(i).map_err(|_| anyhow!("token id {i} is out of range")))
            .collect::<Result<_>>()?;
        self.tokenizer
            .decode(&ids, skip_special)
            .map_err(|e| anyhow!("decoding: {e}"))
    }

    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.tokenizer.token_to_id(token).map(i64::from)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }
}
