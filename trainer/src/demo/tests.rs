use super::*;
use crate::testkit::files_under;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};

pub(crate) fn small_config(seed: u64) -> DemoDataConfig {
    DemoDataConfig {
        world: WorldConfig {
            seed,
            known: 6,
            unknown_train: 12,
            unknown_test: 6,
            decoys: 6,
            ..WorldConfig::default()
        },
        vocab_size: 700,
        ..DemoDataConfig::default()
    }
}

#[test]
fn same_seed_writes_identical_files_and_another_seed_does_not() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    generate(a.path(), &small_config(3), &[]).unwrap();
    generate(b.path(), &small_config(3), &[]).unwrap();
    generate(c.path(), &small_config(4), &[]).unwrap();
    let (fa, fb, fc) = (
        files_under(a.path()),
        files_under(b.path()),
        files_under(c.path()),
    );
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (path, bytes) in &fa {
        assert!(
            fb[path] == *bytes,
            "{} differs between two runs of one seed",
            path.display()
        );
    }
    assert_ne!(fa[Path::new("world.json")], fc[Path::new("world.json")]);
}

#[test]
fn datasets_hold_the_seed_columns_and_photos_served_from_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(dir.path(), &small_config(1), &[]).unwrap();
    let layout = Layout::new(dir.path());
    assert_eq!(summary.train_search_required, 2 * summary.train_search_free);
    assert_eq!(summary.test_search_required, 2 * summary.test_search_free);
    let file = std::fs::File::open(layout.data(Split::Test)).unwrap();
    let rows: Vec<Row> = SerializedFileReader::new(file)
        .unwrap()
        .get_row_iter(None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows.len(),
        summary.test_search_free + summary.test_search_required
    );
    fn get<'a>(row: &'a Row, name: &str) -> &'a Field {
        row.get_column_iter()
            .find(|(n, _)| n.as_str() == name)
            .unwrap_or_else(|| panic!("no field {name}"))
            .1
    }
    fn first(f: &Field) -> &Field {
        match f {
            Field::ListInternal(l) => &l.elements()[0],
            other => panic!("not a list: {other}"),
        }
    }
    for row in &rows {
        let Field::Group(img) = first(get(row, "images")) else {
            panic!("images[0] is not a struct")
        };
        let (Field::Bytes(bytes), Field::Str(path)) = (get(img, "bytes"), get(img, "path")) else {
            panic!("images[0] is not {{bytes, path}}")
        };
        let bytes = bytes.data();
        // JPEG, decodable, identical to the served copy.
        assert_eq!(&bytes[..2], &[0xff, 0xd8]);
        image::load_from_memory(bytes).unwrap();
        assert_eq!(std::fs::read(layout.corpus().join(path)).unwrap(), bytes);
        assert_eq!(
            first(get(row, "image_urls")),
            &Field::Str(format!("{DEFAULT_ENGINE_URL}/corpus/{path}"))
        );
        let Field::Group(extra) = get(row, "extra_info") else {
            panic!("extra_info is not a struct")
        };
        let expected = match get(extra, "search_required") {
            Field::Bool(true) => SEARCH_REQUIRED_SOURCE,
            Field::Bool(false) => SEARCH_FREE_SOURCE,
            other => panic!("search_required is {other}"),
        };
        assert_eq!(get(row, "data_source"), &Field::Str(expected.into()));
    }
}

#[test]
fn question_photos_differ_from_the_corpus_emblems() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), &small_config(2), &[]).unwrap();
    let world: World =
        serde_json::from_slice(&std::fs::read(Layout::new(dir.path()).world()).unwrap()).unwrap();
    let corpus = Layout::new(dir.path()).corpus();
    for q in world.questions.iter().take(10) {
        let photo = std::fs::read(corpus.join(QUERIES_DIR).join(format!("{}.jpg", q.id))).unwrap();
        let page =
            std::fs::read(corpus.join(corpus::town_image_path(&world.towns[q.town]))).unwrap();
        assert_ne!(photo, page);
    }
}

#[test]
fn model_files_name_the_tokenizer_ids() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(dir.path(), &small_config(1), &[]).unwrap();
    let model = Layout::new(dir.path()).model();
    let tok = tokenizers::Tokenizer::from_file(model.join("tokenizer.json")).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["image_token_id"],
        tok.token_to_id("<|image_pad|>").unwrap()
    );
    assert_eq!(
        config["vision_start_token_id"],
        tok.token_to_id("<|vision_start|>").unwrap()
    );
    let vocab = config["text_config"]["vocab_size"].as_u64().unwrap() as usize;
    assert!(vocab >= tok.get_vocab_size(true) && vocab.is_multiple_of(64));
    assert_eq!(summary.vocab_size, tok.get_vocab_size(true));
    let tc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(tc["chat_template"], tokenizer::CHAT_TEMPLATE);
    assert_eq!(tc["eos_token"], "<|im_end|>");
}

#[test]
fn a_bad_engine_url_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = DemoDataConfig {
        engine_url: "ftp://x".into(),
        ..small_config(1)
    };
    let err = generate(dir.path(), &cfg, &[]).unwrap_err().to_string();
    assert!(err.contains("ftp://x"), "{err}");
}

/// The default world is visually unambiguous: every question photo (jittered,
/// resized, JPEG) is nearest to its own town's emblem among all emblems,
/// decoys included, at a coarse 8×8 colour glance.
#[test]
fn every_photo_of_the_default_world_is_nearest_its_own_emblem() {
    use emblem::{image_signature, signature_distance};
    let world = World::generate(&WorldConfig::default()).unwrap();
    let emblems: Vec<Vec<f32>> = world
        .towns
        .iter()
        .map(|t| &t.emblem)
        .chain(&world.decoys)
        .map(|e| e.signature())
        .collect();
    let mut rng = rng_for(0, "photos");
    let mut margins = Vec::new();
    for q in &world.questions {
        let photo = image::load_from_memory(&photo(&world, q, &mut rng).unwrap())
            .unwrap()
            .to_rgb8();
        let sig = image_signature(&photo);
        let own = signature_distance(&sig, &emblems[q.town]);
        let other = (0..emblems.len())
            .filter(|&i| i != q.town)
            .map(|i| signature_distance(&sig, &emblems[i]))
            .fold(f32::INFINITY, f32::min);
        assert!(own < other, "{}: own {own} vs nearest other {other}", q.id);
        margins.push(other - own);
    }
    margins.sort_by(f32::total_cmp);
    assert!(margins[0] > 0.01, "smallest margin {}", margins[0]);
}
