//! The real `.wasm` search tools in the real host, against fake upstreams on
//! loopback that speak SerpApi, Jina and OpenAI formats, and against the
//! offline engine: every fault of the issue, the layers, and the pipeline.
//! Needs the built tools (`make tools`).

use mmsr_host::cache::{CacheStore, CachedInvoker};
use mmsr_host::fakes::{FakeUpstream, Fault, tiny_png};
use mmsr_host::manifest::{Manifest, SecretPlacement, SecretSpec, ToolManifest};
use mmsr_host::pipeline::{SearchConfig, SearchPipeline, point_at_engine};
use mmsr_host::reliability::{BreakerPolicy, Breakers, Layered};
use mmsr_host::runtime::{HostOptions, ToolHost};
use mmsr_host::tools::{ImageInput, PageText, ToolError, ToolInvoker};
use mmsr_trainer::tools::{ImageQuery, SearchTools};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The shipped tool table for `name`, pointed at `fake` (base-url and
/// allow-list only), with a short time limit so a hung upstream ends fast.
fn tool_at(name: &str, fake: &FakeUpstream) -> ToolManifest {
    let manifest = Manifest::load(&repo().join("configs/tools.toml")).unwrap();
    let mut tool = manifest
        .get(name)
        .unwrap_or_else(|| panic!("configs/tools.toml has no {name}"))
        .clone();
    assert!(
        tool.wasm.exists(),
        "{} is missing: run `make tools`",
        tool.wasm.display()
    );
    point_at_engine(&mut tool, fake.addr);
    tool.limits.timeout_ms = 1500;
    tool
}

async fn host_with(tools: &[ToolManifest]) -> ToolHost {
    let options = HostOptions {
        secrets: Arc::new(|k| (k == "SERPAPI_API_KEY").then(|| "test-key".into())),
        ..HostOptions::default()
    };
    let host = ToolHost::new(options).unwrap();
    for t in tools {
        host.load_tool(t).await.unwrap();
    }
    host
}

fn page() -> PageText {
    PageText {
        url: "https://example.org/p".into(),
        title: Some("P".into()),
        text: "The tower was finished in 1889. It is tall.".into(),
    }
}

fn image_at(url: &str) -> ImageInput {
    ImageInput {
        url: Some(url.into()),
        bytes: None,
        mime_type: None,
    }
}

/// One call of the tool `name` of `kind`, reduced to Ok(()) or its error.
async fn call(host: &ToolHost, name: &str) -> Result<usize, ToolError> {
    match name {
        "serpapi-search" => host
            .text_search(name, "eiffel tower", 5)
            .await
            .map(|r| r.len()),
        "serpapi-lens" => host
            .image_search(name, &image_at("https://img.example/a.jpg"), 5)
            .await
            .map(|r| r.len()),
        "jina-reader" => host
            .read_page(name, "https://example.org/p", 2000)
            .await
            .map(|p| p.text.len()),
        "llm-summarizer" => host
            .summarize(name, "when", &page(), 300)
            .await
            .map(|s| s.len()),
        other => panic!("no call for {other}"),
    }
}

/// Whether an error is the one a fault should give.
type Check = Box<dyn Fn(&ToolError) -> bool>;

const NETWORK_TOOLS: [&str; 4] = [
    "serpapi-search",
    "serpapi-lens",
    "jina-reader",
    "llm-summarizer",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_becomes_its_typed_error() {
    for name in NETWORK_TOOLS {
        let fake = FakeUpstream::start().await.unwrap();
        let host = host_with(&[tool_at(name, &fake)]).await;
        assert!(
            call(&host, name).await.unwrap() > 0,
            "{name}: a healthy upstream answers"
        );

        let cases: Vec<(Fault, Check)> = vec![
            (
                Fault::RateLimited { retry_after_s: 7 },
                Box::new(|e| {
                    *e == ToolError::RateLimited {
                        retry_after_s: Some(7),
                    }
                }),
            ),
            // The HTTP-date form: whole seconds from now, the fraction rounded up.
            (
                Fault::RateLimitedUntil { in_s: 30 },
                Box::new(
                    |e| matches!(e, ToolError::RateLimited { retry_after_s: Some(s) } if (29..=31).contains(s)),
                ),
            ),
            (
                Fault::ServerError,
                Box::new(
                    |e| matches!(e, ToolError::Upstream { status: 500, message } if message.contains("Injected failure")),
                ),
            ),
            (
                Fault::Hang,
                Box::new(|e| matches!(e, ToolError::Timeout(_))),
            ),
            (
                Fault::TruncatedJson,
                Box::new(
                    |e| matches!(e, ToolError::MalformedResponse(m) if m.contains("truncated")),
                ),
            ),
            // No HTTP status came back, so none is invented.
            (
                Fault::ShortBody,
                Box::new(|e| {
                    matches!(e, ToolError::Upstream { status: 0, .. })
                        && e.to_string().starts_with("upstream connection failed: ")
                        && e.is_transient()
                }),
            ),
            (
                Fault::Html,
                Box::new(
                    |e| matches!(e, ToolError::MalformedResponse(m) if m.contains("text/html")),
                ),
            ),
            // Past the tool's own cap it is malformed; past the host's `response_bytes` the host refuses it.
            (
                Fault::HugeBody { bytes: 50 << 20 },
                Box::new(|e| {
                    matches!(e, ToolError::MalformedResponse(m) if m.contains("larger than"))
                        || matches!(e, ToolError::Denied(m) if m.contains("response_bytes"))
                }),
            ),
            (
                Fault::Redirect {
                    location: "http://evil.example/steal".into(),
                },
                Box::new(|e| matches!(e, ToolError::Denied(_))),
            ),
            (
                Fault::WrongContentType,
                Box::new(
                    |e| matches!(e, ToolError::MalformedResponse(m) if m.contains("octet-stream")),
                ),
            ),
        ];
        for (fault, check) in cases {
            fake.queue_faults([fault.clone()]);
            let started = std::time::Instant::now();
            let err = call(&host, name)
                .await
                .expect_err(&format!("{name} under {fault:?}"));
            assert!(check(&err), "{name} under {fault:?} gave {err:?}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{name} under {fault:?} took {:?}",
                started.elapsed()
            );
        }
        // And it still serves afterwards.
        assert!(call(&host, name).await.is_ok(), "{name} recovers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serpapi_search_sends_the_documented_request() {
    let fake = FakeUpstream::start().await.unwrap();
    let mut tool = tool_at("serpapi-search", &fake);
    let origin = tool.allowed_outbound_hosts[0].clone();
    tool.secrets.push(SecretSpec {
        env: "SERPAPI_API_KEY".into(),
        host: origin,
        placement: SecretPlacement::Query {
            param: "api_key".into(),
        },
        required: true,
    });
    let host = host_with(&[tool]).await;
    let results = host
        .text_search("serpapi-search", "eiffel tower & paris", 3)
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].title, "Result 1 for eiffel tower & paris");
    let uri = fake.last_uri().unwrap();
    assert!(
        uri.starts_with("/search.json?engine=google&q=eiffel%20tower%20%26%20paris&num=3"),
        "{uri}"
    );
    assert!(
        uri.contains("api_key=test-key"),
        "the host injects the key: {uri}"
    );
    assert!(matches!(
        host.text_search("serpapi-search", "  ", 3).await,
        Err(ToolError::InvalidInput(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lens_fetches_thumbnails_and_needs_a_url() {
    let fake = FakeUpstream::start().await.unwrap();
    let host = host_with(&[tool_at("serpapi-lens", &fake)]).await;
    let results = host
        .image_search("serpapi-lens", &image_at("https://img.example/a.jpg"), 3)
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert!(
        results
            .iter()
            .all(|r| r.thumbnail == tiny_png() && r.mime_type == "image/png")
    );
    assert_eq!(fake.requests(), 4, "one search and three thumbnails");

    let no_url = ImageInput {
        url: None,
        bytes: Some(tiny_png()),
        mime_type: None,
    };
    match host.image_search("serpapi-lens", &no_url, 3).await {
        Err(ToolError::InvalidInput(m)) => assert!(m.contains("public image URL"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A thumbnail that is not an image is left out, the match kept.
    fake.queue_script([None, Some(Fault::Html), None]);
    let results = host
        .image_search("serpapi-lens", &image_at("https://img.example/b.jpg"), 2)
        .await
        .unwrap();
    assert_eq!(
        (results[0].thumbnail.len(), results[0].mime_type.as_str()),
        (0, "")
    );
    assert_eq!(results[1].thumbnail, tiny_png());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jina_reader_truncates_and_llm_summarizer_reads_choices() {
    let reader_fake = FakeUpstream::start().await.unwrap();
    let llm_fake = FakeUpstream::start().await.unwrap();
    let host = host_with(&[
        tool_at("jina-reader", &reader_fake),
        tool_at("llm-summarizer", &llm_fake),
    ])
    .await;
    let page = host
        .read_page("jina-reader", "https://example.org/a?b=c", 50)
        .await
        .unwrap();
    assert!(page.text.chars().count() <= 50, "{}", page.text);
    assert_eq!(
        page.title.as_deref(),
        Some("Page https://example.org/a?b=c")
    );
    let headers = reader_fake.last_headers().unwrap();
    assert_eq!(headers["x-return-format"], "markdown");
    assert!(matches!(
        host.read_page("jina-reader", "file:///etc/passwd", 50)
            .await,
        Err(ToolError::InvalidInput(_))
    ));

    let summary = host
        .summarize("llm-summarizer", "when was it finished", &page, 40)
        .await
        .unwrap();
    assert!(
        summary.starts_with("Summary: Question: when was it finished"),
        "{summary}"
    );
    assert!(summary.chars().count() <= 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_unexplained_errors_under_concurrency() {
    let fake = FakeUpstream::start().await.unwrap();
    let host = host_with(&[tool_at("serpapi-search", &fake)]).await;
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let host = &host;
            async move {
                host.text_search("serpapi-search", &format!("query {i}"), 5)
                    .await
            }
        })
        .collect();
    let results = futures::future::join_all(calls).await;
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_makes_one_upstream_call() {
    let fake = FakeUpstream::with_latency(Duration::from_millis(200))
        .await
        .unwrap();
    let host = host_with(&[tool_at("serpapi-search", &fake)]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CacheStore::open(&dir.path().join("c.redb")).unwrap());
    let cache = CachedInvoker::new(host, store, HashMap::new(), None);
    let calls: Vec<_> = (0..8)
        .map(|_| cache.text_search("serpapi-search", "same query", 5))
        .collect();
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap().len(), 5);
    }
    assert_eq!(fake.requests(), 1);
    cache
        .text_search("serpapi-search", "Same   Query", 5)
        .await
        .unwrap();
    assert_eq!(fake.requests(), 1, "normalised input hits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_stops_calling_a_failing_upstream() {
    let fake = FakeUpstream::start().await.unwrap();
    fake.set_fault(Some(Fault::ServerError));
    let host = host_with(&[tool_at("serpapi-search", &fake)]).await;
    let guarded = Layered {
        around: Breakers::new(BreakerPolicy {
            failure_threshold: 3,
            cooldown: Duration::from_millis(300),
            ..BreakerPolicy::default()
        }),
        inner: host,
    };
    for _ in 0..3 {
        assert!(matches!(
            guarded.text_search("serpapi-search", "q", 5).await,
            Err(ToolError::Upstream { status: 500, .. })
        ));
    }
    assert!(matches!(
        guarded.text_search("serpapi-search", "q", 5).await,
        Err(ToolError::Unavailable { .. })
    ));
    assert_eq!(
        fake.requests(),
        3,
        "the open breaker does not call upstream"
    );
    fake.set_fault(None);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        guarded.text_search("serpapi-search", "q", 5).await.is_ok(),
        "a probe closes it"
    );
}

// ---------------------------------------------------------------------------
// The pipeline from a [search] config, on the offline engine.

/// A corpus of three pages; two have a picture.
fn corpus(dir: &Path) {
    use image::{Rgb, RgbImage};
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let picture = |seed: u32| {
        RgbImage::from_fn(160, 120, move |x, y| {
            let (cx, cy) = (40 + seed * 30, 60);
            let inside = (x as i32 - cx as i32).pow(2) + (y as i32 - cy).pow(2) < 900;
            if inside {
                Rgb([200, (seed * 70) as u8, 30])
            } else {
                Rgb([(x * 255 / 160) as u8, 40 * seed as u8, (y * 2) as u8])
            }
        })
    };
    picture(1).save(dir.join("images/tower.png")).unwrap();
    picture(3).save(dir.join("images/bridge.png")).unwrap();
    let pages = [
        serde_json::json!({"url": "https://example.org/tower", "title": "Eiffel Tower", "text": "The Eiffel Tower is a lattice tower in Paris. It was completed in 1889 for the World's Fair.", "images": ["images/tower.png"]}),
        serde_json::json!({"url": "https://example.org/bridge", "title": "Golden Gate Bridge", "text": "The Golden Gate Bridge is a suspension bridge. It opened in 1937 in San Francisco.", "images": ["images/bridge.png"]}),
        serde_json::json!({"url": "https://example.org/bread", "title": "Bread", "text": "Bread is baked from flour and water."}),
    ];
    let text: Vec<String> = pages.iter().map(|p| p.to_string()).collect();
    std::fs::write(dir.join("pages.jsonl"), text.join("\n")).unwrap();
}

fn local_config(dir: &Path) -> SearchConfig {
    let toml = format!(
        "[search]\nbackend = \"local\"\ncorpus = {:?}\nmanifest = {:?}\ntop_k = 2\n[search.cache]\npath = {:?}\n",
        dir.join("corpus"),
        repo().join("configs/tools.toml"),
        dir.join("cache.redb")
    );
    SearchConfig::from_toml(&toml).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_pipeline_answers_text_and_image_searches() {
    let dir = tempfile::tempdir().unwrap();
    corpus(&dir.path().join("corpus"));
    let pipeline = SearchPipeline::from_config(&local_config(dir.path()), HostOptions::default())
        .await
        .unwrap();

    let obs = pipeline
        .text_search("when did the golden gate bridge open")
        .await;
    assert_eq!(obs.error, None);
    let text = obs.text_content();
    assert!(text.starts_with("Text search results for \"when did the golden gate bridge open\":\n1. [Golden Gate Bridge](https://example.org/bridge)\n"), "{text}");
    assert!(text.contains("1937"), "{text}");

    // The row has no URL: the local engine hosts the (re-encoded) image for Lens.
    let query = image::imageops::resize(
        &image::open(dir.path().join("corpus/images/tower.png"))
            .unwrap()
            .to_rgb8(),
        100,
        75,
        image::imageops::FilterType::Triangle,
    );
    let mut jpeg = std::io::Cursor::new(Vec::new());
    query.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let obs = pipeline
        .image_search(&ImageQuery {
            bytes: jpeg.into_inner(),
            url: None,
        })
        .await;
    assert_eq!(obs.error, None, "{}", obs.text_content());
    assert_eq!(obs.image_count(), 1, "{}", obs.text_content());
    assert!(
        obs.text_content()
            .contains("Eiffel Tower (https://example.org/tower)"),
        "{}",
        obs.text_content()
    );

    // Garbage instead of an image: the model is told to reason alone.
    let obs = pipeline
        .image_search(&ImageQuery {
            bytes: b"not an image".to_vec(),
            url: None,
        })
        .await;
    assert_eq!(
        obs.text_content(),
        "there was an error in performing search, reason with your own capabilities"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_names_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    corpus(&dir.path().join("corpus"));
    let mut config = local_config(dir.path());
    config.tools.page_reader = "serpapi-search".into();
    let err = format!(
        "{:#}",
        SearchPipeline::from_config(&config, HostOptions::default())
            .await
            .err()
            .unwrap()
    );
    assert!(
        err.contains("page_reader") && err.contains("text-search"),
        "{err}"
    );
    config.tools.page_reader = "no-such-tool".into();
    let err = format!(
        "{:#}",
        SearchPipeline::from_config(&config, HostOptions::default())
            .await
            .err()
            .unwrap()
    );
    assert!(err.contains("no-such-tool"), "{err}");
    std::fs::write(dir.path().join("corpus/pages.jsonl"), "{\"url\": 1}\n").unwrap();
    let err = format!(
        "{:#}",
        SearchPipeline::from_config(&local_config(dir.path()), HostOptions::default())
            .await
            .err()
            .unwrap()
    );
    assert!(err.contains("pages.jsonl line 1"), "{err}");
}

/// Run by `cache_survives_a_process_restart` in a child process: one search
/// through a fresh pipeline, then the cache counters on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_child() {
    let Some(dir) = std::env::var_os("MMSR_CACHE_CHILD_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let config = local_config(&dir);
    {
        let pipeline = SearchPipeline::from_config(&config, HostOptions::default())
            .await
            .unwrap();
        let obs = pipeline.text_search("eiffel tower completed").await;
        assert!(
            obs.text_content().contains("1889"),
            "{}",
            obs.text_content()
        );
    }
    let stats = CacheStore::open(&config.cache.unwrap().path)
        .unwrap()
        .stats()
        .unwrap();
    println!("STATS {} {}", stats.hits, stats.misses);
}

#[test]
fn cache_survives_a_process_restart() {
    let dir = tempfile::tempdir().unwrap();
    corpus(&dir.path().join("corpus"));
    let run = || {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "cache_child", "--nocapture", "--test-threads=1"])
            .env("MMSR_CACHE_CHILD_DIR", dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("STATS ").map(|(_, s)| s))
            .unwrap_or_else(|| panic!("no stats in {stdout}"));
        let n: Vec<u64> = line.split(' ').map(|v| v.parse().unwrap()).collect();
        (n[0], n[1])
    };
    let (hits1, misses1) = run();
    assert_eq!(hits1, 0);
    assert!(
        misses1 >= 3,
        "search, read and summary miss the first time ({misses1})"
    );
    let (hits2, misses2) = run();
    assert_eq!(misses2, misses1, "a new process misses nothing");
    assert_eq!(
        hits2, misses1,
        "every call that missed the first time hits now"
    );
}
