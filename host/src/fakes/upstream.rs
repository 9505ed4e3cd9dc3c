//! A fake upstream on loopback that answers like SerpApi (Google, Lens),
//! Jina Reader and an OpenAI-compatible chat endpoint, plus `/search` in the
//! plain `title\turl\tsnippet` lines of the host's test guests, with
//! injectable faults, an optional fixed latency and an optional required API
//! key. It records the requests it saw (what the host injected). One
//! instance per upstream in a test, so a fault hits exactly one tool.

use super::invoker::tiny_png;
use crate::wire::{jina, openai, serpapi};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the next answer does wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: retry_after_s`.
    RateLimited { retry_after_s: u32 },
    /// 429 with `Retry-After` as the HTTP-date `in_s` seconds from now.
    RateLimitedUntil { in_s: u32 },
    /// 500 with the upstream's own error body.
    ServerError,
    /// Accepts the request and never answers.
    Hang,
    /// 200, `application/json`, the body cut in half.
    TruncatedJson,
    /// 200 whose `content-length` promises twice the body it sends before
    /// the connection closes: no whole answer arrives.
    ShortBody,
    /// 200 with an HTML page (a captive portal, a CDN error page).
    Html,
    /// 200 with a chunked body of this many bytes (no content-length).
    HugeBody { bytes: usize },
    /// 302 to this URL (a host that is not on the tool's list).
    Redirect { location: String },
    /// 200, the right JSON, labelled `application/octet-stream`.
    WrongContentType,
    /// 401 with the upstream's error body, as a keyed API answers a request
    /// without its key (see [`FakeUpstream::require_header`]).
    Unauthorized,
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
}

/// Requests kept by [`FakeUpstream::seen`] (the newest).
const SEEN_KEPT: usize = 4096;

#[derive(Default)]
struct Shared {
    base_url: String,
    latency: Duration,
    /// Applied to the next requests, one each, before `standing`.
    queued: Mutex<VecDeque<Option<Fault>>>,
    standing: Mutex<Option<Fault>>,
    requests: AtomicUsize,
    seen: Mutex<VecDeque<SeenRequest>>,
    /// Requests without this header value get [`Fault::Unauthorized`].
    required_header: Mutex<Option<(String, String)>>,
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        // Abort rather than drain: a hung connection must not keep it alive.
        self.task.abort();
    }
}

impl FakeUpstream {
    pub async fn start() -> std::io::Result<Self> {
        Self::with_latency(Duration::ZERO).await
    }

    /// Every answer waits `latency` first (benchmarks' simulated upstream).
    pub async fn with_latency(latency: Duration) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            latency,
            ..Default::default()
        });
        let app = Router::new()
            .route("/search.json", get(search))
            .route("/search", get(lines).post(lines))
            .route("/thumbs/{name}", get(thumb))
            .route("/v1/chat/completions", axum::routing::post(chat))
            .fallback(reader)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Every later request gets `fault` (None: answer normally).
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.shared.standing.lock().unwrap() = fault;
    }

    /// The next requests get these faults, one each, then the standing behaviour.
    pub fn queue_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.queue_script(faults.into_iter().map(Some));
    }

    /// The next requests, one each: `None` answers normally, `Some` injects.
    pub fn queue_script(&self, script: impl IntoIterator<Item = Option<Fault>>) {
        self.shared.queued.lock().unwrap().extend(script);
    }

    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Answers 401 to every later request whose header `name` is not `value`.
    pub fn require_header(&self, name: &str, value: &str) {
        *self.shared.required_header.lock().unwrap() =
            Some((name.to_ascii_lowercase(), value.to_string()));
    }

    /// Headers of the last request (to check what the host injected).
    pub fn last_headers(&self) -> Option<HeaderMap> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .back()
            .map(|r| r.headers.clone())
    }

    /// Path and query of the last request.
    pub fn last_uri(&self) -> Option<String> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .back()
            .map(|r| r.uri.clone())
    }

    /// The requests received, oldest first (the newest few thousand).
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.shared.seen.lock().unwrap().iter().cloned().collect()
    }
}

/// Records the request, takes its fault and waits the latency.
async fn begin(shared: &Shared, method: &Method, headers: &HeaderMap, uri: &Uri) -> Option<Fault> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    {
        let mut seen = shared.seen.lock().unwrap();
        if seen.len() == SEEN_KEPT {
            seen.pop_front();
        }
        seen.push_back(SeenRequest {
            method: method.clone(),
            uri: uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: headers.clone(),
        });
    }
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let unauthorized = match &*shared.required_header.lock().unwrap() {
        Some((name, value)) => headers
            .get(name.as_str())
            .is_none_or(|v| v != value.as_str()),
        None => false,
    };
    if unauthorized {
        return Some(Fault::Unauthorized);
    }
    let queued = shared.queued.lock().unwrap().pop_front();
    match queued {
        Some(scripted) => scripted,
        None => shared.standing.lock().unwrap().clone(),
    }
}

/// The normal answer `ok` (a JSON body), or what `fault` makes of it.
async fn answer(
    fault: Option<Fault>,
    ok: serde_json::Value,
    error_body: serde_json::Value,
) -> Response {
    let json = |status: StatusCode, v: &serde_json::Value| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response()
    };
    match fault {
        None => json(StatusCode::OK, &ok),
        Some(Fault::RateLimited { retry_after_s }) => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::CONTENT_TYPE, "application/json".to_string()),
                (header::RETRY_AFTER, retry_after_s.to_string()),
            ],
            error_body.to_string(),
        )
            .into_response(),
        Some(Fault::RateLimitedUntil { in_s }) => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::CONTENT_TYPE, "application/json".to_string()),
                (
                    header::RETRY_AFTER,
                    httpdate::fmt_http_date(
                        std::time::SystemTime::now() + Duration::from_secs(in_s.into()),
                    ),
                ),
            ],
            error_body.to_string(),
        )
            .into_response(),
        Some(Fault::ServerError) => json(StatusCode::INTERNAL_SERVER_ERROR, &error_body),
        Some(Fault::Hang) => std::future::pending().await,
        Some(Fault::TruncatedJson) => {
            let text = ok.to_string();
            let cut = text[..text.len() / 2].to_string();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                cut,
            )
                .into_response()
        }
        Some(Fault::ShortBody) => {
            let text = ok.to_string();
            let mut resp = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                text.clone(),
            )
                .into_response();
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, (text.len() * 2).into());
            resp
        }
        Some(Fault::Html) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><html><body><h1>Please enable JavaScript</h1></body></html>",
        )
            .into_response(),
        Some(Fault::HugeBody { bytes }) => {
            const CHUNK: usize = 64 * 1024;
            let chunk = Bytes::from(vec![b' '; CHUNK]);
            let chunks = bytes.div_ceil(CHUNK);
            let stream = futures::stream::iter(
                (0..chunks).map(move |_| Ok::<_, std::convert::Infallible>(chunk.clone())),
            );
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Some(Fault::Redirect { location }) => {
            (StatusCode::FOUND, [(header::LOCATION, location)], "").into_response()
        }
        Some(Fault::WrongContentType) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            ok.to_string(),
        )
            .into_response(),
        Some(Fault::Unauthorized) => json(StatusCode::UNAUTHORIZED, &error_body),
    }
}

/// `/search?q=Q&k=K` (GET) or the query as the body (POST): `k` lines of
/// `title\turl\tsnippet`, the format of the host's test guests.
async fn lines(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let fault = begin(&shared, &method, &headers, &uri).await;
    if fault.is_some() {
        return answer(
            fault,
            serde_json::json!({}),
            serde_json::json!({ "error": "Injected failure." }),
        )
        .await;
    }
    let q = if method == Method::POST {
        String::from_utf8_lossy(&body).trim().to_string()
    } else {
        params.get("q").cloned().unwrap_or_default()
    };
    let k: usize = params
        .get("k")
        .and_then(|k| k.parse().ok())
        .unwrap_or(5)
        .min(100);
    let base = &shared.base_url;
    let text: String = (1..=k)
        .map(|i| format!("Result {i} for {q}\t{base}/pages/{i}\tSnippet {i} about {q}.\n"))
        .collect();
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

async fn search(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let fault = begin(&shared, &Method::GET, &headers, &uri).await;
    let base = &shared.base_url;
    let num: usize = params
        .get("num")
        .and_then(|n| n.parse().ok())
        .unwrap_or(10)
        .min(10);
    let ok = match params.get("engine").map(String::as_str) {
        Some("google_lens") => serde_json::to_value(serpapi::LensResponse {
            search_metadata: serpapi::metadata("fake", 0.1),
            visual_matches: (1..=num as u32)
                .map(|i| serpapi::VisualMatch {
                    position: i,
                    title: format!("Visual match {i}"),
                    link: format!("{base}/pages/match-{i}"),
                    source: "fake.example".into(),
                    thumbnail: format!("{base}/thumbs/{i}.png"),
                    thumbnail_width: Some(8),
                    thumbnail_height: Some(8),
                })
                .collect(),
            error: None,
        }),
        _ => {
            let q = params.get("q").cloned().unwrap_or_default();
            serde_json::to_value(serpapi::GoogleResponse {
                search_metadata: serpapi::metadata("fake", 0.1),
                organic_results: (1..=num as u32)
                    .map(|i| serpapi::OrganicResult {
                        position: i,
                        title: format!("Result {i} for {q}"),
                        link: format!("{base}/pages/{i}"),
                        displayed_link: None,
                        snippet: Some(format!("Snippet {i} about {q}.")),
                    })
                    .collect(),
                ..Default::default()
            })
        }
    }
    .expect("fixtures serialise");
    answer(
        fault,
        ok,
        serde_json::json!({ "error": "Injected failure." }),
    )
    .await
}

async fn thumb(State(shared): State<Arc<Shared>>, headers: HeaderMap, uri: Uri) -> Response {
    match begin(&shared, &Method::GET, &headers, &uri).await {
        None => ([(header::CONTENT_TYPE, "image/png")], tiny_png()).into_response(),
        Some(Fault::Hang) => std::future::pending().await,
        Some(_) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html>not an image</html>",
        )
            .into_response(),
    }
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let fault = begin(&shared, &Method::POST, &headers, &uri).await;
    let ok = match serde_json::from_slice::<openai::ChatRequest>(&body) {
        Ok(req) => {
            let user = req
                .messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| m.content.as_str())
                .unwrap_or("");
            let gist: String = user.chars().take(80).collect();
            serde_json::to_value(openai::ChatResponse::new(
                &req.model,
                format!("Summary: {gist}"),
            ))
            .expect("fixture")
        }
        Err(err) => {
            let body =
                openai::ErrorResponse::new("invalid_request_error", "bad_request", err.to_string());
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    let err = serde_json::to_value(openai::ErrorResponse::new(
        "server_error",
        "injected",
        "Injected failure.",
    ))
    .expect("fixture");
    answer(fault, ok, err).await
}

async fn reader(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let fault = begin(&shared, &method, &headers, &uri).await;
    if method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let target = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let data = jina::ReaderData {
        title: format!("Page {target}"),
        description: String::new(),
        url: target.clone(),
        content: format!("# Page\n\nThis page at {target} has facts. It was written in 1999. ")
            .repeat(3),
        usage: jina::Usage { tokens: 30 },
    };
    let ok = serde_json::to_value(jina::ReaderResponse::ok(data)).expect("fixture");
    let err = serde_json::to_value(jina::ErrorResponse::new(
        500,
        "InternalServerError",
        "Injected failure.",
    ))
    .expect("fixture");
    answer(fault, ok, err).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn speaks_the_formats_and_injects_faults() {
        let fake = FakeUpstream::start().await.unwrap();
        let base = fake.base_url();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let g: serpapi::GoogleResponse = client
            .get(format!("{base}/search.json?engine=google&q=x&num=3"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(g.organic_results.len(), 3);
        let page = client
            .get(&g.organic_results[0].link)
            .header("accept", "application/json");
        let page: jina::ReaderResponse = page.send().await.unwrap().json().await.unwrap();
        assert!(page.data.content.contains("1999"));

        fake.queue_faults([
            Fault::RateLimited { retry_after_s: 3 },
            Fault::Redirect {
                location: "http://evil.example/".into(),
            },
            Fault::HugeBody { bytes: 1 << 20 },
        ]);
        let r = client
            .get(format!("{base}/search.json?q=x"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            (
                r.status().as_u16(),
                r.headers()["retry-after"].to_str().unwrap()
            ),
            (429, "3")
        );
        let r = client
            .get(format!("{base}/search.json?q=x"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            (
                r.status().as_u16(),
                r.headers()["location"].to_str().unwrap()
            ),
            (302, "http://evil.example/")
        );
        let r = client
            .get(format!("{base}/search.json?q=x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().len(), 1 << 20);
        fake.set_fault(Some(Fault::Hang));
        let hung = tokio::time::timeout(
            Duration::from_millis(200),
            client.get(format!("{base}/x")).send(),
        )
        .await;
        assert!(hung.is_err(), "a hung upstream never answers");
        assert_eq!(fake.requests(), 6);
    }

    #[tokio::test]
    async fn serves_lines_checks_keys_and_records() {
        let fake = FakeUpstream::start().await.unwrap();
        let base = fake.base_url();
        let client = reqwest::Client::new();
        let text = client
            .get(format!("{base}/search?q=cats&k=2"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            text,
            format!(
                "Result 1 for cats\t{base}/pages/1\tSnippet 1 about cats.\n\
                 Result 2 for cats\t{base}/pages/2\tSnippet 2 about cats.\n"
            )
        );
        let posted = client
            .post(format!("{base}/search?k=1"))
            .body("dogs")
            .send()
            .await
            .unwrap();
        assert!(
            posted
                .text()
                .await
                .unwrap()
                .starts_with("Result 1 for dogs\t")
        );

        fake.require_header("x-api-key", "k1");
        let denied = client
            .get(format!("{base}/search?q=x"))
            .send()
            .await
            .unwrap();
        assert_eq!(denied.status().as_u16(), 401);
        let ok = client
            .get(format!("{base}/search?q=x"))
            .header("x-api-key", "k1")
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status().as_u16(), 200);
        let seen = fake.seen();
        assert_eq!(seen.len(), 4);
        assert_eq!(
            (seen[1].method.as_str(), seen[1].uri.as_str()),
            ("POST", "/search?k=1")
        );
        assert!(seen[2].headers.get("x-api-key").is_none());
        assert_eq!(seen[3].headers["x-api-key"], "k1");
    }
}
