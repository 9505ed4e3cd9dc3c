//! The self-contained demo world (`mmsr-host demo-data`): towns with
//! procedurally drawn emblems and a few facts, a web corpus about them for
//! the offline search engine, questions in the seed's parquet format, and a
//! tokenizer and config for a tiny Qwen2.5-VL. Deterministic for a seed.
//!
//! ```text
//! OUT/world.json               towns, facts, splits, questions (for SFT and inspection)
//! OUT/corpus/pages.jsonl       the engine's corpus: atlas, travel, region, people, trade, sketch pages
//! OUT/corpus/images/*.jpg      emblems on the pages
//! OUT/corpus/queries/*.jpg     the question photos, served so Lens gets a URL
//! OUT/data/{train,test}.parquet
//! OUT/data/known_views.parquet more photos of the known towns' training questions (SFT)
//! OUT/model/                   tokenizer.json, tokenizer_config.json, config.json, …
//! OUT/summary.json             counts and token lengths
//! ```

pub mod corpus;
pub mod dataset;
pub mod emblem;
pub mod evidence;
pub mod model_files;
mod names;
pub mod script;
pub mod tokenizer;
pub mod world;

use anyhow::Context;
use dataset::{ExtraInfo, SEARCH_FREE_SOURCE, SEARCH_REQUIRED_SOURCE, SeedRow};
use emblem::{Jitter, jpeg};
use model_files::TinyModelConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use world::{Question, Split, World, WorldConfig};

/// Side of the emblems on corpus pages.
pub const CORPUS_IMAGE_PX: u32 = 192;
/// Question photos: side range and JPEG quality range.
const PHOTO_PX: std::ops::RangeInclusive<u32> = 96..=160;
const PHOTO_QUALITY: std::ops::RangeInclusive<u8> = 70..=90;
pub const QUERIES_DIR: &str = "queries";
/// Where `make demo` serves the engine; the question photos' URLs use it.
pub const DEFAULT_ENGINE_URL: &str = "http://127.0.0.1:8787";

/// An independent random stream per purpose, so adding draws to one part
/// of the world does not reshuffle the others.
pub fn rng_for(seed: u64, purpose: &str) -> ChaCha8Rng {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(purpose.as_bytes())
        .finalize();
    ChaCha8Rng::from_seed(digest.into())
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoDataConfig {
    pub world: WorldConfig,
    pub model: TinyModelConfig,
    /// Learned BPE tokens, including the 256 byte symbols.
    pub vocab_size: usize,
    /// Base URL of the offline engine that will serve `corpus/`.
    pub engine_url: String,
}

impl Default for DemoDataConfig {
    fn default() -> Self {
        Self {
            world: WorldConfig::default(),
            model: TinyModelConfig::default(),
            vocab_size: 2048,
            engine_url: DEFAULT_ENGINE_URL.to_string(),
        }
    }
}

/// What was written, with the token lengths that size the demo's budgets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub seed: u64,
    pub towns: usize,
    pub known_towns: usize,
    pub pages: usize,
    pub corpus_images: usize,
    pub train_search_free: usize,
    pub train_search_required: usize,
    pub test_search_free: usize,
    pub test_search_required: usize,
    /// Rows of `known_views.parquet`.
    pub known_views: usize,
    pub vocab_size: usize,
    /// Share of the words of town names that are one token (with a leading
    /// space, as they are copied out of search results).
    pub single_token_name_words: f64,
    pub mean_question_tokens: f64,
    pub mean_answer_tokens: f64,
    pub mean_page_tokens: f64,
    /// Longest scripted trajectory's assistant text, in tokens.
    pub max_script_tokens: usize,
}

/// The photo a question shows: its town's emblem, jittered, resized and
/// re-encoded, so it is never byte-identical to the corpus copy.
fn photo(world: &World, q: &Question, rng: &mut impl Rng) -> anyhow::Result<Vec<u8>> {
    let side = rng.random_range(PHOTO_PX);
    let quality = rng.random_range(PHOTO_QUALITY);
    let img = world.towns[q.town].emblem.render(side, Jitter::random(rng));
    jpeg(&img, quality)
}

/// Separates a question id from a view number in a known-view photo's name
/// (`train-00012@1.jpg`).
pub const VIEW_SEP: char = '@';

/// One parquet row for question `q` shown in `bytes`, whose photo is also
/// written to the corpus as `queries/<photo_id>.jpg` so Lens gets a URL.
fn seed_row(
    world: &World,
    q: &Question,
    photo_id: &str,
    bytes: Vec<u8>,
    engine_url: &str,
    corpus_dir: &Path,
) -> anyhow::Result<SeedRow> {
    let rel = format!("{QUERIES_DIR}/{photo_id}.jpg");
    write(&corpus_dir.join(&rel), &bytes)?;
    Ok(SeedRow {
        prompt: vec![("user".into(), q.question.clone())],
        images: vec![(bytes, rel.clone())],
        ground_truth: q.answer.clone(),
        candidate_answers: q.candidates.clone(),
        data_source: if q.search_required {
            SEARCH_REQUIRED_SOURCE
        } else {
            SEARCH_FREE_SOURCE
        }
        .into(),
        image_urls: Some(vec![format!("{engine_url}/corpus/{rel}")]),
        extra: ExtraInfo {
            id: photo_id.to_string(),
            split: q.split.name().into(),
            kind: serde_json::to_value(q.kind)?
                .as_str()
                .unwrap_or_default()
                .into(),
            entity: world.towns[q.town].name.clone(),
            search_required: q.search_required,
        },
    })
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    write(
        path,
        (serde_json::to_string_pretty(value)? + "\n").as_bytes(),
    )
}

/// Paths inside an output dir.
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
    pub fn world(&self) -> PathBuf {
        self.root.join("world.json")
    }
    pub fn corpus(&self) -> PathBuf {
        self.root.join("corpus")
    }
    pub fn data(&self, split: Split) -> PathBuf {
        self.root
            .join("data")
            .join(format!("{}.parquet", split.name()))
    }
    pub fn model(&self) -> PathBuf {
        self.root.join("model")
    }
    /// More photos of the known towns' training questions, for SFT.
    pub fn known_views(&self) -> PathBuf {
        self.root.join("data").join("known_views.parquet")
    }
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }
}

fn mean(xs: impl Iterator<Item = usize>) -> f64 {
    let (sum, n) = xs.fold((0usize, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { sum as f64 / n as f64 }
}

/// Generates the whole world into `out`. `extra_texts` (e.g. the prompt
/// files) join the tokenizer's training text so prompts tokenize compactly.
pub fn generate(
    out: &Path,
    config: &DemoDataConfig,
    extra_texts: &[String],
) -> anyhow::Result<Summary> {
    config.model.validate()?;
    let engine_url = url_base(&config.engine_url)?;
    let world = World::generate(&config.world)?;
    let layout = Layout::new(out);

    let files = corpus::build(&world)?;
    let corpus_dir = layout.corpus();
    let mut lines = String::new();
    for page in &files.pages {
        lines.push_str(&serde_json::to_string(page)?);
        lines.push('\n');
    }
    write(&corpus_dir.join(corpus::PAGES_FILE), lines.as_bytes())?;
    for (path, bytes) in &files.images {
        write(&corpus_dir.join(path), bytes)?;
    }

    let mut rng = rng_for(config.world.seed, "photos");
    for split in [Split::Train, Split::Test] {
        let mut rows = Vec::new();
        for q in world.questions_in(split) {
            let bytes = photo(&world, q, &mut rng)?;
            rows.push(seed_row(&world, q, &q.id, bytes, &engine_url, &corpus_dir)?);
        }
        let path = layout.data(split);
        std::fs::create_dir_all(path.parent().expect("data dir"))?;
        dataset::write_parquet(&path, &rows)?;
    }
    // Its own stream: more views leave the train and test photos as they were.
    let mut rng = rng_for(config.world.seed, "known views");
    let mut rows = Vec::new();
    for q in world
        .questions_in(Split::Train)
        .filter(|q| !q.search_required)
    {
        for view in 1..=config.world.known_views {
            let bytes = photo(&world, q, &mut rng)?;
            let id = format!("{}{VIEW_SEP}{view}", q.id);
            rows.push(seed_row(&world, q, &id, bytes, &engine_url, &corpus_dir)?);
        }
    }
    dataset::write_parquet(&layout.known_views(), &rows)?;
    let known_views = rows.len();
    write_json(&layout.world(), &world)?;

    // The tokenizer learns from everything the model will read or write.
    let mut texts: Vec<String> = Vec::new();
    for p in &files.pages {
        texts.push(p.text.clone());
        // Search results show titles with links, in a few layouts.
        texts.push(format!("1. [{}]({})", p.title, p.url));
        texts.push(format!("1. {} ({})", p.title, p.url));
    }
    for q in &world.questions {
        let town = &world.towns[q.town];
        texts.push(q.question.clone());
        texts.extend(script::phrases(q, town));
    }
    texts.extend(extra_texts.iter().cloned());
    let tok = tokenizer::train(&texts, config.vocab_size)?;
    let model_dir = layout.model();
    std::fs::create_dir_all(&model_dir)
        .with_context(|| format!("creating {}", model_dir.display()))?;
    tokenizer::save(&tok, &model_dir)?;
    write_json(
        &model_dir.join("config.json"),
        &config.model.config_json(&tok)?,
    )?;
    write_json(
        &model_dir.join("preprocessor_config.json"),
        &config.model.preprocessor_json(),
    )?;
    write_json(
        &model_dir.join("generation_config.json"),
        &config.model.generation_json(&tok)?,
    )?;

    let count = |t: &str| -> anyhow::Result<usize> {
        Ok(tok
            .encode(t, false)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .get_ids()
            .len())
    };
    let words: std::collections::BTreeSet<&str> =
        world.towns.iter().flat_map(|t| t.name.split(' ')).collect();
    let single = words
        .iter()
        .map(|w| count(&format!(" {w}")).map(|n| usize::from(n == 1)))
        .sum::<anyhow::Result<usize>>()?;
    let q_tokens = world
        .questions
        .iter()
        .map(|q| count(&q.question))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let a_tokens = world
        .questions
        .iter()
        .map(|q| count(&format!(" {}", q.answer)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let p_tokens = files
        .pages
        .iter()
        .map(|p| count(&p.text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut max_script = 0;
    for q in &world.questions {
        let town = &world.towns[q.town];
        let turns = script::search_then_answer(q, town);
        let total: usize = turns
            .iter()
            .map(|t| count(&t.text()))
            .sum::<anyhow::Result<usize>>()?;
        max_script = max_script.max(total);
    }
    let in_split = |split: Split, required: bool| {
        world
            .questions_in(split)
            .filter(|q| q.search_required == required)
            .count()
    };
    let summary = Summary {
        seed: config.world.seed,
        towns: world.towns.len(),
        known_towns: config.world.known,
        pages: files.pages.len(),
        corpus_images: files.images.len(),
        train_search_free: in_split(Split::Train, false),
        train_search_required: in_split(Split::Train, true),
        test_search_free: in_split(Split::Test, false),
        test_search_required: in_split(Split::Test, true),
        known_views,
        vocab_size: tok.get_vocab_size(true),
        single_token_name_words: single as f64 / words.len().max(1) as f64,
        mean_question_tokens: mean(q_tokens.into_iter()),
        mean_answer_tokens: mean(a_tokens.into_iter()),
        mean_page_tokens: mean(p_tokens.into_iter()),
        max_script_tokens: max_script,
    };
    write_json(&layout.summary(), &summary)?;
    Ok(summary)
}

/// The engine URL without a trailing slash; refuses anything but http(s).
fn url_base(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim_end_matches('/');
    anyhow::ensure!(
        (trimmed.starts_with("http://") || trimmed.starts_with("https://"))
            && trimmed.len() > "https://".len(),
        "engine URL {url:?} is not an http(s) URL"
    );
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests;
