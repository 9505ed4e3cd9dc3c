use super::*;
use crate::fakes::{Call, ScriptedInvoker};

fn config() -> SearchConfig {
    SearchConfig {
        backend: Backend::Remote,
        deadline_s: 5,
        ..Default::default()
    }
}

fn pipeline(inv: ScriptedInvoker) -> (Arc<ScriptedInvoker>, SearchPipeline) {
    let inv = Arc::new(inv);
    let p = SearchPipeline::new(Arc::new(Shared(inv.clone())), &config());
    (inv, p)
}

/// Lets a test keep a handle on the scripted invoker it gives the pipeline.
struct Shared(Arc<ScriptedInvoker>);

impl ToolInvoker for Shared {
    fn text_search<'a>(
        &'a self,
        t: &'a str,
        q: &'a str,
        k: u32,
    ) -> crate::tools::CallFuture<'a, Vec<WebResult>> {
        self.0.text_search(t, q, k)
    }
    fn image_search<'a>(
        &'a self,
        t: &'a str,
        i: &'a ImageInput,
        k: u32,
    ) -> crate::tools::CallFuture<'a, Vec<ImageResult>> {
        self.0.image_search(t, i, k)
    }
    fn read_page<'a>(
        &'a self,
        t: &'a str,
        u: &'a str,
        m: u32,
    ) -> crate::tools::CallFuture<'a, crate::tools::PageText> {
        self.0.read_page(t, u, m)
    }
    fn summarize<'a>(
        &'a self,
        t: &'a str,
        q: &'a str,
        p: &'a crate::tools::PageText,
        m: u32,
    ) -> crate::tools::CallFuture<'a, String> {
        self.0.summarize(t, q, p, m)
    }
}

#[tokio::test]
async fn text_search_reads_and_summarises_every_result() {
    let (inv, p) = pipeline(ScriptedInvoker::default());
    let obs = SearchTools::text_search(&p, "eiffel tower").await;
    assert_eq!(obs.error, None);
    let text = obs.text_content();
    assert!(text.starts_with("Text search results for \"eiffel tower\":\n1. [Result 1 for eiffel tower](https://example.org/eiffel-tower/1)\nAbout eiffel tower:"), "{text}");
    assert!(text.contains("\n5. [Result 5"), "{text}");
    let calls = inv.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::ReadPage { tool, .. } if tool == "jina-reader"))
            .count(),
        5
    );
    assert_eq!(
        calls
            .iter()
            .filter(
                |c| matches!(c, Call::Summarize { tool, .. } if tool == "extractive-summarizer")
            )
            .count(),
        5
    );
}

#[tokio::test]
async fn a_bad_page_falls_back_to_its_snippet() {
    let inv = ScriptedInvoker::default();
    inv.fail_next("jina-reader", [ToolError::MalformedResponse("html".into())]);
    inv.fail_next(
        "extractive-summarizer",
        [ToolError::Internal("boom".into())],
    );
    let (_, p) = pipeline(inv);
    let obs = SearchTools::text_search(&p, "q").await;
    assert_eq!(obs.error, None);
    assert_eq!(
        obs.text_content().matches("snippet ").count(),
        2,
        "{}",
        obs.text_content()
    );
}

#[tokio::test]
async fn a_failed_search_tells_the_model_to_reason_alone() {
    let inv = ScriptedInvoker::default();
    inv.fail_next(
        "serpapi-search",
        [ToolError::RateLimited {
            retry_after_s: Some(60),
        }],
    );
    let (_, p) = pipeline(inv);
    let obs = SearchTools::text_search(&p, "q").await;
    assert_eq!(obs.text_content(), format::SEARCH_ERROR_MESSAGE);
    assert!(obs.error.unwrap().contains("rate limited"));
    let empty = SearchTools::text_search(&p, "  ").await;
    assert_eq!(empty.text_content(), format::SEARCH_ERROR_MESSAGE);
}

#[tokio::test]
async fn a_hung_search_ends_at_the_deadline() {
    let inv = Arc::new(ScriptedInvoker::new(Duration::from_secs(3600)));
    let cfg = SearchConfig {
        backend: Backend::Remote,
        deadline_s: 1,
        ..Default::default()
    };
    let p = SearchPipeline::new(Arc::new(Shared(inv)), &cfg);
    let obs = SearchTools::image_search(
        &p,
        &ImageQuery {
            bytes: vec![1, 2, 3],
            url: None,
        },
    )
    .await;
    assert_eq!(obs.text_content(), format::SEARCH_ERROR_MESSAGE);
    assert!(obs.error.unwrap().contains("deadline"));
}

#[tokio::test]
async fn image_search_shows_thumbnails_as_images() {
    let (inv, p) = pipeline(ScriptedInvoker::default());
    let obs = SearchTools::image_search(
        &p,
        &ImageQuery {
            bytes: crate::fakes::tiny_png(),
            url: Some("https://x/y.png".into()),
        },
    )
    .await;
    assert_eq!(obs.error, None);
    assert_eq!(obs.image_count(), 5);
    assert!(obs.text_content().starts_with("Image search results:\n1. "));
    assert_eq!(
        inv.calls(),
        vec![Call::ImageSearch {
            tool: "serpapi-lens".into()
        }]
    );
}

#[tokio::test]
async fn local_engine_hosts_query_images() {
    let dir = crate::search_engine::tests::corpus_dir();
    let engine = Arc::new(crate::search_engine::SearchEngine::open(dir.path()).unwrap());
    let hosting = ImageHosting::Engine {
        engine: engine.clone(),
        base_url: "http://127.0.0.1:9".into(),
    };
    let url = hosting
        .url_for(&crate::fakes::tiny_png())
        .await
        .unwrap()
        .unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:9/uploads/") && url.ends_with(".png"),
        "{url}"
    );
    let name = url.rsplit('/').next().unwrap();
    assert!(engine.uploaded(name).is_some());
    assert!(matches!(
        hosting.url_for(b"not an image").await,
        Err(ToolError::InvalidInput(_))
    ));
}

#[test]
fn undecodable_thumbnails_are_dropped() {
    let mut r = ImageResult {
        title: "t".into(),
        page_url: "u".into(),
        thumbnail: b"<html>".to_vec(),
        mime_type: "image/png".into(),
    };
    drop_undecodable_thumbnail(&mut r);
    assert!(r.thumbnail.is_empty() && r.mime_type.is_empty());
    let mut ok = ImageResult {
        thumbnail: crate::fakes::tiny_png(),
        ..r.clone()
    };
    drop_undecodable_thumbnail(&mut ok);
    assert!(!ok.thumbnail.is_empty());
    // Cut short (a hostile upstream or a broken transfer): `image` alone
    // may decode it, with grey rows.
    let whole = crate::fakes::tiny_png();
    let mut cut = ImageResult {
        thumbnail: whole[..whole.len() - 12].to_vec(),
        ..r.clone()
    };
    drop_undecodable_thumbnail(&mut cut);
    assert!(cut.thumbnail.is_empty() && cut.mime_type.is_empty());
}
