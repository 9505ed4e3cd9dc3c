//! The demo world is searchable the way the demo needs: the offline engine
//! finds a question photo's town by image (Lens) and a town's facts by text.

use mmsr_host::search_engine::SearchEngine;
use mmsr_trainer::demo::emblem::{Jitter, jpeg};
use mmsr_trainer::demo::world::{QuestionKind, World};
use mmsr_trainer::demo::{self, DemoDataConfig, Layout, corpus};
use rand::SeedableRng;
use std::path::Path;
use std::time::Instant;

fn world_dir(dir: &Path, config: &DemoDataConfig) -> World {
    demo::generate(dir, config, &[]).unwrap();
    serde_json::from_slice(&std::fs::read(Layout::new(dir).world()).unwrap()).unwrap()
}

fn small(seed: u64) -> DemoDataConfig {
    let mut c = DemoDataConfig {
        vocab_size: 700,
        ..DemoDataConfig::default()
    };
    (
        c.world.seed,
        c.world.known,
        c.world.unknown_train,
        c.world.unknown_test,
        c.world.decoys,
    ) = (seed, 10, 20, 10, 10);
    c
}

fn default_world(seed: u64) -> DemoDataConfig {
    let mut c = DemoDataConfig::default();
    c.world.seed = seed;
    c
}

/// How often the pictured town's page came first and among the first five.
#[derive(Debug)]
struct LensRates {
    top1: usize,
    top5: usize,
    total: usize,
    /// Largest distance at which the right page was found.
    worst_match: f32,
    /// Smallest distance of any other page returned.
    closest_other: f32,
}

/// Runs every question photo of a generated world through image search.
fn lens_rates(config: &DemoDataConfig) -> LensRates {
    let tmp = tempfile::tempdir().unwrap();
    let world = world_dir(tmp.path(), config);
    let corpus_dir = Layout::new(tmp.path()).corpus();
    let engine = SearchEngine::open(&corpus_dir).unwrap();
    let mut rates = LensRates {
        top1: 0,
        top5: 0,
        total: world.questions.len(),
        worst_match: 0.0,
        closest_other: f32::INFINITY,
    };
    let started = Instant::now();
    for q in &world.questions {
        let photo = std::fs::read(
            corpus_dir
                .join(demo::QUERIES_DIR)
                .join(format!("{}.jpg", q.id)),
        )
        .unwrap();
        let found = engine.search_image(&photo, 5).unwrap();
        let town = corpus::town_url(&world.towns[q.town]);
        let rank = found
            .iter()
            .position(|h| engine.pages()[h.page].url == town);
        rates.top1 += usize::from(rank == Some(0));
        rates.top5 += usize::from(rank.is_some());
        for (i, h) in found.iter().enumerate() {
            if Some(i) == rank {
                rates.worst_match = rates.worst_match.max(h.distance);
            } else {
                rates.closest_other = rates.closest_other.min(h.distance);
            }
        }
    }
    eprintln!(
        "seed {}: {} photos, {} images: top-1 {}/{n}, top-5 {}/{n}, right page at ≤ {:.3}, others at ≥ {:.3}, {:.2} ms a query",
        config.world.seed,
        rates.total,
        world.towns.len() + world.decoys.len(),
        rates.top1,
        rates.top5,
        rates.worst_match,
        rates.closest_other,
        started.elapsed().as_secs_f64() * 1e3 / rates.total as f64,
        n = rates.total,
    );
    rates
}

#[test]
fn lens_finds_the_pictured_town_first() {
    // Every photo is jittered, resized and re-encoded; the engine must still
    // put its town first for nearly all of them, whatever the seed.
    for seed in [0, 1] {
        let r = lens_rates(&small(seed));
        assert!(r.top1 * 100 >= r.total * 95, "seed {seed}: {r:?}");
    }
}

#[test]
fn lens_finds_the_pictured_town_in_the_default_world() {
    // 300 corpus emblems, many sharing colours, 900 photos per seed.
    for seed in [0, 7] {
        let r = lens_rates(&default_world(seed));
        assert!(r.top1 * 100 >= r.total * 95, "seed {seed}: {r:?}");
        assert!(r.top5 * 100 >= r.total * 99, "seed {seed}: {r:?}");
    }
}

#[test]
fn lens_tells_sketches_from_towns_and_refuses_unrelated_pictures() {
    let tmp = tempfile::tempdir().unwrap();
    let world = world_dir(tmp.path(), &small(3));
    let engine = SearchEngine::open(&Layout::new(tmp.path()).corpus()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    // A photo of a decoy emblem finds its sketch page, not a town.
    for (i, decoy) in world.decoys.iter().enumerate() {
        let photo = jpeg(&decoy.render(128, Jitter::random(&mut rng)), 80).unwrap();
        let found = engine.search_image(&photo, 5).unwrap();
        let top = found.first().map(|h| engine.pages()[h.page].url.clone());
        assert_eq!(
            top.as_deref(),
            Some(format!("https://emblems.example/sketches/{i:03}").as_str()),
            "decoy {i}"
        );
    }
    // A smooth rainbow is no emblem at all.
    let rainbow = image::RgbImage::from_fn(160, 120, |x, y| {
        image::Rgb([(x * 255 / 160) as u8, (y * 255 / 120) as u8, 128])
    });
    let found = engine
        .search_image(&jpeg(&rainbow, 85).unwrap(), 5)
        .unwrap();
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn the_scripted_text_query_finds_the_fact() {
    let tmp = tempfile::tempdir().unwrap();
    let world = world_dir(tmp.path(), &small(0));
    let engine = SearchEngine::open(&Layout::new(tmp.path()).corpus()).unwrap();
    for q in world
        .questions
        .iter()
        .filter(|q| q.kind != QuestionKind::Name)
    {
        let town = &world.towns[q.town];
        let query = q.kind.text_query(town).unwrap();
        let hits = engine.search_text(&query, 3).unwrap();
        let found = hits
            .iter()
            .any(|h| engine.pages()[h.page].text.contains(&q.answer));
        assert!(found, "{query:?}: no top-3 page holds {:?}", q.answer);
    }
}
