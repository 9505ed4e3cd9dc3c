//! The demo world: towns, each with an emblem and three facts, and the
//! questions asked about them. Which towns are "known" decides which
//! questions are search-free.

use super::emblem::{EmblemSpec, signature_distance};
use super::names;
use super::rng_for;
use anyhow::{bail, ensure};
use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Sizes of the world. The defaults keep the whole `make demo` chain small.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorldConfig {
    pub seed: u64,
    /// Towns in the warm-start data: their questions are search-free.
    pub known: usize,
    /// Unknown towns asked about in training (search-required).
    pub unknown_train: usize,
    /// Unknown towns asked about only in the test split.
    pub unknown_test: usize,
    pub regions: usize,
    pub founders: usize,
    /// Emblem-like pictures of no town, on distractor pages.
    pub decoys: usize,
    /// Search-required questions per search-free question, in both splits
    /// (FVQA-train has about 3,400 : 1,600).
    pub required_per_free: f64,
    /// Test questions per known town (each a different kind when it can be).
    pub test_questions_per_known: usize,
    /// Extra photos of each training question about a known town, for the
    /// warm start only (`data/known_views.parquet`): knowing a town means
    /// recognising it in a new photo, and a few photos per town teach only
    /// those photos.
    pub known_views: usize,
    /// Minimum coarse-signature distance between any two emblems.
    pub min_emblem_distance: f32,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            known: 40,
            // One question each: a name seen once is worth reading from the
            // results, not memorising.
            unknown_train: 320,
            unknown_test: 40,
            regions: 10,
            founders: 30,
            decoys: 40,
            required_per_free: 2.0,
            test_questions_per_known: 1,
            known_views: 2,
            min_emblem_distance: 0.12,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Familiarity {
    Known,
    UnknownTrain,
    UnknownTest,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Town {
    pub id: usize,
    pub name: String,
    /// Lower-case name with hyphens, used in URLs and file names.
    pub slug: String,
    pub region: String,
    pub founder: String,
    pub founder_surname: String,
    pub product: String,
    pub emblem: EmblemSpec,
    pub familiarity: Familiarity,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionKind {
    /// "What is this?": recognition alone.
    Name,
    Region,
    Founder,
    Product,
}

impl QuestionKind {
    pub const ALL: [QuestionKind; 4] = [
        QuestionKind::Name,
        QuestionKind::Region,
        QuestionKind::Founder,
        QuestionKind::Product,
    ];

    pub fn question(self) -> &'static str {
        match self {
            QuestionKind::Name => "Which town has this emblem?",
            QuestionKind::Region => "In which region is the town with this emblem?",
            QuestionKind::Founder => "Who founded the town with this emblem?",
            QuestionKind::Product => "What is the town with this emblem famous for?",
        }
    }

    /// The gold answer and other accepted answers.
    pub fn answers(self, town: &Town) -> (String, Vec<String>) {
        match self {
            QuestionKind::Name => (town.name.clone(), vec![]),
            QuestionKind::Region => (town.region.clone(), vec![]),
            QuestionKind::Founder => (town.founder.clone(), vec![town.founder_surname.clone()]),
            QuestionKind::Product => (town.product.clone(), vec![]),
        }
    }

    /// The text search a searcher would make once the town is recognised
    /// (none for the name: the image search already tells it).
    pub fn text_query(self, town: &Town) -> Option<String> {
        match self {
            QuestionKind::Name => None,
            QuestionKind::Region => Some(format!("{} region", town.name)),
            QuestionKind::Founder => Some(format!("who founded {}", town.name)),
            QuestionKind::Product => Some(format!("{} famous for", town.name)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// One question about a pictured town; its picture is drawn separately.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub id: String,
    pub split: Split,
    pub town: usize,
    pub kind: QuestionKind,
    pub question: String,
    pub answer: String,
    pub candidates: Vec<String>,
    pub search_required: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct World {
    pub config: WorldConfig,
    pub towns: Vec<Town>,
    pub decoys: Vec<EmblemSpec>,
    pub regions: Vec<String>,
    pub founders: Vec<String>,
    pub questions: Vec<Question>,
}

impl WorldConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.known > 0, "world.known must be at least 1");
        ensure!(
            self.unknown_train > 0 && self.unknown_test > 0,
            "world.unknown_train and world.unknown_test must be at least 1"
        );
        ensure!(
            self.regions > 0 && self.founders > 0,
            "world.regions and world.founders must be at least 1"
        );
        ensure!(
            self.required_per_free.is_finite() && self.required_per_free >= 0.0,
            "world.required_per_free must be a non-negative number, got {}",
            self.required_per_free
        );
        ensure!(
            self.test_questions_per_known > 0,
            "world.test_questions_per_known must be at least 1"
        );
        let kinds = QuestionKind::ALL.len();
        let train_required = (self.known * kinds) as f64 * self.required_per_free;
        if train_required > (self.unknown_train * kinds) as f64 {
            bail!(
                "world.unknown_train = {} towns cannot carry {train_required} search-required training questions \
                 ({kinds} kinds each); raise unknown_train or lower required_per_free",
                self.unknown_train
            );
        }
        let test_required =
            (self.known * self.test_questions_per_known) as f64 * self.required_per_free;
        if test_required > (self.unknown_test * kinds) as f64 {
            bail!(
                "world.unknown_test = {} towns cannot carry {test_required} search-required test questions; \
                 raise unknown_test or lower required_per_free",
                self.unknown_test
            );
        }
        Ok(())
    }

    pub fn towns(&self) -> usize {
        self.known + self.unknown_train + self.unknown_test
    }
}

/// Emblems that are pairwise at least `min_distance` apart, drawn greedily.
fn distinct_emblems(
    n: usize,
    min_distance: f32,
    rng: &mut impl Rng,
) -> anyhow::Result<Vec<EmblemSpec>> {
    let mut specs: Vec<EmblemSpec> = Vec::with_capacity(n);
    let mut sigs: Vec<Vec<f32>> = Vec::with_capacity(n);
    let mut tries = 0usize;
    while specs.len() < n {
        tries += 1;
        if tries > n * 500 {
            bail!(
                "could draw only {} of {n} emblems at distance ≥ {min_distance}; lower world.min_emblem_distance or ask for fewer towns/decoys",
                specs.len()
            );
        }
        let spec = EmblemSpec::random(rng);
        let sig = spec.signature();
        if sigs
            .iter()
            .all(|s| signature_distance(s, &sig) >= min_distance)
        {
            specs.push(spec);
            sigs.push(sig);
        }
    }
    Ok(specs)
}

/// Spreads `count` questions over `towns`, cycling through each town's kinds
/// in a shuffled order so kinds stay balanced.
fn spread(towns: &[usize], count: usize, rng: &mut impl Rng) -> Vec<(usize, QuestionKind)> {
    let orders: Vec<Vec<QuestionKind>> = towns
        .iter()
        .map(|_| {
            let mut kinds = QuestionKind::ALL.to_vec();
            kinds.shuffle(rng);
            kinds
        })
        .collect();
    (0..count)
        .map(|i| {
            (
                towns[i % towns.len()],
                orders[i % towns.len()][i / towns.len()],
            )
        })
        .collect()
}

impl World {
    pub fn generate(config: &WorldConfig) -> anyhow::Result<World> {
        config.validate()?;
        let n = config.towns();
        let mut rng = rng_for(config.seed, "names");
        let mut taken: BTreeSet<String> = names::PRODUCTS.iter().map(|p| p.to_string()).collect();
        taken.extend(names::FIRST_NAMES.iter().map(|f| f.to_lowercase()));
        let town_names = names::towns(n, &mut taken, &mut rng);
        let regions = names::regions(config.regions, &mut taken, &mut rng);
        let founders = names::founders(config.founders, &mut taken, &mut rng);

        let mut rng = rng_for(config.seed, "emblems");
        let mut emblems =
            distinct_emblems(n + config.decoys, config.min_emblem_distance, &mut rng)?;
        let decoys = emblems.split_off(n);

        let mut rng = rng_for(config.seed, "facts");
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let mut familiarity = vec![Familiarity::UnknownTrain; n];
        for &i in &order[..config.known] {
            familiarity[i] = Familiarity::Known;
        }
        for &i in &order[config.known + config.unknown_train..] {
            familiarity[i] = Familiarity::UnknownTest;
        }
        let towns: Vec<Town> = town_names
            .into_iter()
            .zip(emblems)
            .enumerate()
            .map(|(id, (name, emblem))| {
                let (first, surname) = &founders[rng.random_range(0..founders.len())];
                Town {
                    id,
                    slug: name.to_lowercase().replace(' ', "-"),
                    name,
                    region: regions[rng.random_range(0..regions.len())].clone(),
                    founder: format!("{first} {surname}"),
                    founder_surname: surname.clone(),
                    product: names::PRODUCTS[rng.random_range(0..names::PRODUCTS.len())]
                        .to_string(),
                    emblem,
                    familiarity: familiarity[id],
                }
            })
            .collect();

        let of = |f: Familiarity| -> Vec<usize> {
            towns
                .iter()
                .filter(|t| t.familiarity == f)
                .map(|t| t.id)
                .collect()
        };
        let (known, unknown_train, unknown_test) = (
            of(Familiarity::Known),
            of(Familiarity::UnknownTrain),
            of(Familiarity::UnknownTest),
        );
        let kinds = QuestionKind::ALL.len();
        let mut rng = rng_for(config.seed, "questions");
        let train_free = spread(&known, known.len() * kinds, &mut rng);
        let train_required = spread(
            &unknown_train,
            (train_free.len() as f64 * config.required_per_free).round() as usize,
            &mut rng,
        );
        let test_free = spread(
            &known,
            known.len() * config.test_questions_per_known,
            &mut rng,
        );
        let test_required = spread(
            &unknown_test,
            (test_free.len() as f64 * config.required_per_free).round() as usize,
            &mut rng,
        );

        let mut questions = Vec::new();
        for (split, free, required) in [
            (Split::Train, train_free, train_required),
            (Split::Test, test_free, test_required),
        ] {
            let mut items: Vec<(usize, QuestionKind, bool)> = free
                .into_iter()
                .map(|(t, k)| (t, k, false))
                .chain(required.into_iter().map(|(t, k)| (t, k, true)))
                .collect();
            items.shuffle(&mut rng);
            for (i, (town, kind, search_required)) in items.into_iter().enumerate() {
                let (answer, candidates) = kind.answers(&towns[town]);
                questions.push(Question {
                    id: format!("{}-{i:05}", split.name()),
                    split,
                    town,
                    kind,
                    question: kind.question().to_string(),
                    answer,
                    candidates,
                    search_required,
                });
            }
        }
        Ok(World {
            config: config.clone(),
            towns,
            decoys,
            regions,
            founders: founders
                .into_iter()
                .map(|(f, s)| format!("{f} {s}"))
                .collect(),
            questions,
        })
    }

    pub fn questions_in(&self, split: Split) -> impl Iterator<Item = &Question> {
        self.questions.iter().filter(move |q| q.split == split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> WorldConfig {
        WorldConfig {
            known: 12,
            unknown_train: 24,
            unknown_test: 12,
            decoys: 10,
            ..WorldConfig::default()
        }
    }

    #[test]
    fn splits_follow_the_two_to_one_mix() {
        let world = World::generate(&small()).unwrap();
        for split in [Split::Train, Split::Test] {
            let qs: Vec<&Question> = world.questions_in(split).collect();
            let required = qs.iter().filter(|q| q.search_required).count();
            let free = qs.len() - required;
            assert_eq!(required, 2 * free, "{split:?}");
        }
        assert_eq!(world.questions_in(Split::Train).count(), 12 * 4 * 3);
    }

    #[test]
    fn search_free_means_known_and_test_unknowns_are_unseen_in_training() {
        let world = World::generate(&small()).unwrap();
        let train_towns: BTreeSet<usize> =
            world.questions_in(Split::Train).map(|q| q.town).collect();
        for q in &world.questions {
            let fam = world.towns[q.town].familiarity;
            assert_eq!(q.search_required, fam != Familiarity::Known, "{}", q.id);
            if q.split == Split::Test && q.search_required {
                assert_eq!(fam, Familiarity::UnknownTest);
                assert!(
                    !train_towns.contains(&q.town),
                    "test town {} leaked into training",
                    q.town
                );
            }
        }
    }

    #[test]
    fn answers_match_the_town_facts() {
        let world = World::generate(&small()).unwrap();
        for q in &world.questions {
            let t = &world.towns[q.town];
            let expected = match q.kind {
                QuestionKind::Name => &t.name,
                QuestionKind::Region => &t.region,
                QuestionKind::Founder => &t.founder,
                QuestionKind::Product => &t.product,
            };
            assert_eq!(&q.answer, expected);
        }
    }

    #[test]
    fn same_seed_same_world_other_seed_other_world() {
        let a = World::generate(&small()).unwrap();
        let b = World::generate(&small()).unwrap();
        assert_eq!(a, b);
        let c = World::generate(&WorldConfig { seed: 1, ..small() }).unwrap();
        assert_ne!(a.towns[0].name, c.towns[0].name);
    }

    #[test]
    fn impossible_mix_is_refused_with_the_key_named() {
        let err = World::generate(&WorldConfig {
            unknown_train: 2,
            ..small()
        })
        .unwrap_err();
        assert!(err.to_string().contains("world.unknown_train"), "{err}");
    }
}
