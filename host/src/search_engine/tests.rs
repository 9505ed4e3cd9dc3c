//! The engine over HTTP, in the wire formats the tools parse.

use super::image_index::tests::{encode, picture};
use super::*;
use crate::wire::{jina, serpapi};
use image::ImageFormat;

/// A corpus of three pages, two of them with a picture.
pub(crate) fn corpus_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    std::fs::write(
        dir.path().join("images/tower.png"),
        encode(&picture(1, 200, 160), ImageFormat::Png),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("images/bridge.jpg"),
        encode(&picture(2, 240, 180), ImageFormat::Jpeg),
    )
    .unwrap();
    let pages = [
        serde_json::json!({"url": "https://example.org/tower", "title": "Eiffel Tower", "text": "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed in 1889.", "images": ["images/tower.png"]}),
        serde_json::json!({"url": "https://example.org/bridge?lang=en", "title": "Golden Gate Bridge", "text": "The Golden Gate Bridge spans the Golden Gate strait. It opened in 1937.", "images": ["images/bridge.jpg"]}),
        serde_json::json!({"url": "https://example.org/bread", "title": "Bread", "text": "Bread is baked from flour and water."}),
    ];
    let lines: Vec<String> = pages.iter().map(|p| p.to_string()).collect();
    std::fs::write(dir.path().join(corpus::PAGES_FILE), lines.join("\n")).unwrap();
    dir
}

async fn start() -> (tempfile::TempDir, RunningEngine) {
    let dir = corpus_dir();
    let engine = Arc::new(SearchEngine::open(dir.path()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    (dir, serve(engine, listener).unwrap())
}

use std::sync::Arc;

#[tokio::test]
async fn google_search_and_reader() {
    let (_dir, engine) = start().await;
    let base = engine.base_url();
    let client = reqwest::Client::new();
    let body: serpapi::GoogleResponse = client
        .get(format!("{base}/search.json"))
        .query(&[
            ("engine", "google"),
            ("q", "when did the golden gate bridge open"),
            ("num", "2"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body.error.is_none());
    assert_eq!(
        body.organic_results[0].link,
        "https://example.org/bridge?lang=en"
    );
    assert!(body.organic_results.len() <= 2);

    let empty: serpapi::GoogleResponse = client
        .get(format!("{base}/search.json?engine=google&q=zzzz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty.error.as_deref(), Some(serpapi::NO_RESULTS));

    let bad = client
        .get(format!("{base}/search.json?engine=bing&q=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let err: serpapi::ErrorBody = bad.json().await.unwrap();
    assert!(err.error.contains("bing"));

    // Jina: the target URL keeps its own query string.
    let page: jina::ReaderResponse = client
        .get(format!("{base}/https://example.org/bridge?lang=en"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page.data.title, "Golden Gate Bridge");
    assert!(page.data.content.contains("1937"));
    let text = client
        .get(format!("{base}/https://example.org/bread"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with("Title: Bread") && text.contains("flour"),
        "{text}"
    );
    let missing = client
        .get(format!("{base}/https://nowhere.example/"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 422);
    engine.shutdown().await;
}

#[tokio::test]
async fn lens_matches_a_reencoded_upload() {
    let (_dir, engine) = start().await;
    let base = engine.base_url();
    let client = reqwest::Client::new();
    // The query is the tower picture, smaller and re-encoded as JPEG.
    let query = image::imageops::resize(
        &picture(1, 200, 160),
        120,
        96,
        image::imageops::FilterType::Triangle,
    );
    let upload: serde_json::Value = client
        .post(format!("{base}/uploads"))
        .body(encode(&query, ImageFormat::Jpeg))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = upload["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&base));
    let lens: serpapi::LensResponse = client
        .get(format!("{base}/search.json"))
        .query(&[("engine", "google_lens"), ("url", url.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(lens.visual_matches.len(), 1, "{lens:?}");
    let hit = &lens.visual_matches[0];
    assert_eq!(
        (hit.link.as_str(), hit.source.as_str()),
        ("https://example.org/tower", "example.org")
    );
    let thumb = client.get(&hit.thumbnail).send().await.unwrap();
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    let img = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert!(img.width() <= 256 && img.height() <= 256);

    // Corpus images are addressable too; foreign URLs are refused (offline).
    let by_path: serpapi::LensResponse = client
        .get(format!(
            "{base}/search.json?engine=google_lens&url={base}/corpus/images/bridge.jpg"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        by_path.visual_matches[0].link,
        "https://example.org/bridge?lang=en"
    );
    let foreign = client
        .get(format!(
            "{base}/search.json?engine=google_lens&url=https://example.com/x.jpg"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 400);
    let not_image = client
        .post(format!("{base}/uploads"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(not_image.status(), 400);
    // A PNG signature followed by junk is not kept either.
    let junk = client
        .post(format!("{base}/uploads"))
        .body([&b"\x89PNG\r\n\x1a\n"[..], &[7u8; 4096]].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(junk.status(), 400);
    engine.shutdown().await;
}

/// A client that never finishes its headers or its body is cut off, and
/// connections over the cap wait for one of them to end instead of
/// holding a task each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_connections_capped() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = corpus_dir();
    let engine = Arc::new(SearchEngine::open(dir.path()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let limits = ServeLimits {
        header_read_timeout: Duration::from_millis(600),
        request_timeout: Duration::from_millis(600),
        max_connections: 2,
        ..ServeLimits::default()
    };
    let engine = serve_with(engine, listener, limits).unwrap();
    let addr = engine.addr;

    // Half a head, then nothing: the server closes the connection.
    let mut slow_head = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow_head
        .write_all(b"GET /search.json?engine=google&q=tower HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A whole head promising a body that never comes.
    let mut slow_body = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow_body
        .write_all(b"POST /uploads HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    // Both slots are taken: a third client is answered only once one ends.
    let start = Instant::now();
    let answer = reqwest::get(format!(
        "{}/search.json?engine=google&q=tower",
        engine.base_url()
    ))
    .await
    .unwrap();
    assert!(answer.status().is_success());
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(400), "{waited:?}");

    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow_head.read_to_end(&mut buf))
        .await
        .expect("the half head's connection is still open")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.ends_with("not read within 0.6 s"), "{text}");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow_body.read_to_end(&mut buf))
        .await
        .expect("the slow body's connection is still open")
        .ok();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");

    // A kept-alive connection that goes quiet after its answer is closed by
    // the same timer, but with nothing more said: a 408 there would be read
    // as the answer to the client's next request.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /uploads/none.png HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buf))
        .await
        .expect("the idle connection is still open")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    // Shutdown does not wait on the pooled connection of the client above.
    tokio::time::timeout(Duration::from_secs(5), engine.shutdown())
        .await
        .unwrap();
}

/// A client that sends requests but reads no answers loses its connection
/// once the answers stop moving; a declared oversize body and an overlong
/// query are refused at once, by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_loses_its_slot() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let dir = corpus_dir();
    let image = std::fs::read(dir.path().join("images/tower.png")).unwrap();
    let engine = Arc::new(SearchEngine::open(dir.path()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let limits = ServeLimits {
        write_stall_timeout: Duration::from_millis(500),
        max_connections: 1,
        ..ServeLimits::default()
    };
    let engine = serve_with(engine, listener, limits).unwrap();
    let addr = engine.addr;

    // Asks for ~64 MiB of images on one connection and reads none of it:
    // far more than the socket buffers hold, so the server's writes stall.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut greedy = socket.connect(addr).await.unwrap();
    let asks = (64 << 20) / image.len().max(1) + 1;
    let flood = tokio::spawn(async move {
        let one = b"GET /corpus/images/tower.png HTTP/1.1\r\nHost: x\r\n\r\n";
        for _ in 0..asks {
            if greedy.write_all(one).await.is_err() {
                break;
            }
        }
        greedy
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The only slot is the greedy client's until its writes time out.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = engine.base_url();
    let answer = client
        .get(format!("{base}/search.json?engine=google&q=tower"))
        .send()
        .await
        .expect("served once the greedy client's connection is cut");
    assert!(answer.status().is_success());
    flood.abort();

    let huge = client
        .post(format!("{base}/uploads"))
        .header("content-length", "99999999999")
        .body(reqwest::Body::wrap_stream(futures::stream::pending::<
            Result<Vec<u8>, std::io::Error>,
        >()))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    assert!(huge.text().await.unwrap().contains("99999999999 bytes"));
    let long = client
        .get(format!(
            "{base}/search.json?engine=google&q={}",
            "tower+".repeat(400)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), 400);
    assert!(long.text().await.unwrap().contains("the limit is 2048"));
}
