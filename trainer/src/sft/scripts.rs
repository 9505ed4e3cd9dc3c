//! Where SFT's assistant turns come from: a [`TrajectorySource`] gives the
//! scripted turns for a dataset sample. The demo world's ideal searcher
//! ([`DemoScripts`]) answers search-free questions at once and looks
//! search-required ones up (image, then text for a fact); the sample's
//! `data_source` says which.

use crate::data::Sample;
use crate::demo::world::{Question, World};
use crate::demo::{VIEW_SEP, script};
use crate::eval::Category;
use crate::tools::ToolObservation;
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::path::Path;

pub trait TrajectorySource {
    /// The assistant turns, in order: searches, then the answer.
    fn turns(&self, sample: &Sample) -> Result<Vec<String>>;

    /// Whether `obs`, the environment's reply to scripted turn `turn`, holds
    /// what the script's next turn reads from it. A script that names what
    /// the results never showed teaches the model to make it up.
    fn grounded(&self, _sample: &Sample, _turn: usize, _obs: &ToolObservation) -> bool {
        true
    }
}

/// The demo world's scripts, found by the question id that names each
/// question photo (`…/queries/<id>.jpg` or `<id>@<view>.jpg`, the row's
/// `image_urls`).
pub struct DemoScripts {
    world: World,
    by_id: HashMap<String, usize>,
}

impl DemoScripts {
    pub fn new(world: World) -> Self {
        let by_id = world
            .questions
            .iter()
            .enumerate()
            .map(|(i, q)| (q.id.clone(), i))
            .collect();
        Self { world, by_id }
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the demo world {}", path.display()))?;
        let world: World = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a demo world.json", path.display()))?;
        Ok(Self::new(world))
    }

    fn question(&self, sample: &Sample) -> Result<&Question> {
        let url = sample.image_url.as_deref().with_context(|| {
            format!(
                "{}: no image URL, so no demo question id to find its script by",
                sample.id
            )
        })?;
        let stem = Path::new(url)
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("{}: image URL {url:?} names no question", sample.id))?;
        // Another photo of the same question (`known_views.parquet`).
        let id = stem.split_once(VIEW_SEP).map_or(stem, |(q, _)| q);
        let q = self
            .by_id
            .get(id)
            .map(|&i| &self.world.questions[i])
            .with_context(|| {
                format!(
                    "{}: question {id:?} (from {url:?}) is not in the demo world",
                    sample.id
                )
            })?;
        if q.question != sample.question || q.answer != sample.gold.ground_truth {
            bail!(
                "{}: question {id:?} of the world is {:?} → {:?}, the sample says {:?} → {:?} (world and data from different runs?)",
                sample.id,
                q.question,
                q.answer,
                sample.question,
                sample.gold.ground_truth
            );
        }
        Ok(q)
    }
}

impl TrajectorySource for DemoScripts {
    fn turns(&self, sample: &Sample) -> Result<Vec<String>> {
        let q = self.question(sample)?;
        let town = &self.world.towns[q.town];
        let turns = match Category::from_data_source(&sample.data_source) {
            Category::SearchFree => script::direct(q, town),
            Category::SearchRequired => script::search_then_answer(q, town),
            Category::Unlabelled => bail!(
                "{}: data_source {:?} says neither search_free nor search_required",
                sample.id,
                sample.data_source
            ),
        };
        Ok(turns.iter().map(script::ScriptedTurn::text).collect())
    }

    /// Image results must name the town, text results hold the answer (its
    /// scripts search the image first).
    fn grounded(&self, sample: &Sample, turn: usize, obs: &ToolObservation) -> bool {
        let Ok(q) = self.question(sample) else {
            return false;
        };
        let town = &self.world.towns[q.town];
        let text = obs.text_content().to_lowercase();
        let needle = if turn == 0 { &town.name } else { &q.answer };
        text.contains(&needle.to_lowercase())
    }
}
