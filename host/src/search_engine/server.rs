//! The engine's HTTP face (axum):
//! - `GET /search.json?engine=google&q=…&num=…` and `…engine=google_lens&url=…` (SerpApi)
//! - `GET /{url}` (Jina Reader; JSON with `Accept: application/json`, else text)
//! - `GET /corpus/{path}` (a corpus image by its path in pages.jsonl), `GET /thumbnails/{n}.jpg`
//! - `POST /uploads` (image bytes → `{"url"}`), `GET /uploads/{name}`: query images for Lens

use super::SearchEngine;
use super::connection::{ServeLimits, accept_loop};
use crate::wire::{jina, serpapi};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const MAX_UPLOAD_BYTES: usize = 20 << 20;
/// Google's own limit on a query; ranking cost grows with its terms.
const MAX_QUERY_BYTES: usize = 2048;
const DEFAULT_NUM: usize = 10;
const MAX_NUM: usize = 100;

struct AppState {
    engine: Arc<SearchEngine>,
    base_url: String,
    addr: SocketAddr,
}

/// A running engine; dropping it (or [`RunningEngine::shutdown`]) stops the server.
pub struct RunningEngine {
    pub addr: SocketAddr,
    pub engine: Arc<SearchEngine>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningEngine {
    /// `http://127.0.0.1:PORT`, the base URL tools are pointed at.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Serves until the process is stopped.
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningEngine {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `engine` on `listener` in a background task.
pub fn serve(engine: Arc<SearchEngine>, listener: TcpListener) -> anyhow::Result<RunningEngine> {
    serve_with(engine, listener, ServeLimits::default())
}

pub fn serve_with(
    engine: Arc<SearchEngine>,
    listener: TcpListener,
    limits: ServeLimits,
) -> anyhow::Result<RunningEngine> {
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState {
        engine: engine.clone(),
        base_url: format!("http://{addr}"),
        addr,
    });
    let app = Router::new()
        .route("/search.json", get(search))
        .route("/corpus/{*path}", get(corpus_image))
        .route("/thumbnails/{name}", get(thumbnail))
        .route("/uploads", post(upload))
        .route("/uploads/{name}", get(uploaded))
        .fallback(get(read_page))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            limits.request_timeout,
            limit_request,
        ))
        .with_state(state);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(accept_loop(listener, app, limits, stopped));
    tracing::info!(%addr, "search engine listening");
    Ok(RunningEngine {
        addr,
        engine,
        stop: Some(stop),
        task,
    })
}

/// Refuses a body declared over the upload limit before waiting for it,
/// and answers 408 to a request not read and answered within `timeout`.
async fn limit_request(
    State(timeout): State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > MAX_UPLOAD_BYTES as u64) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a body of {n} bytes is over the {MAX_UPLOAD_BYTES}-byte limit"),
        )
            .into_response();
    }
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(answer) => answer,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request was not read within {} s",
                timeout.as_secs_f64()
            ),
        )
            .into_response(),
    }
}

fn serp_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serpapi::ErrorBody::new(message))).into_response()
}

async fn search(
    State(state): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let started = Instant::now();
    let num = match params.get("num").map(|n| n.parse::<usize>()) {
        None => DEFAULT_NUM,
        Some(Ok(n)) => n.clamp(1, MAX_NUM),
        Some(Err(_)) => return serp_error(StatusCode::BAD_REQUEST, "Invalid `num` parameter."),
    };
    // Ranking and image matching are CPU work: off the async workers, so
    // one long query does not stall every other client.
    blocking(
        move || match params.get("engine").map(String::as_str).unwrap_or("google") {
            "google" => google(&state, params.get("q").map(String::as_str), num, started),
            "google_lens" => lens(&state, params.get("url").map(String::as_str), num, started),
            other => serp_error(
                StatusCode::BAD_REQUEST,
                format!("Unsupported `{other}` search engine."),
            ),
        },
    )
    .await
}

/// `work` on tokio's blocking pool; a panic in it is a 500, not a lost
/// connection.
async fn blocking(work: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|err| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the search engine failed: {err}"),
            )
                .into_response()
        })
}

fn google(state: &AppState, q: Option<&str>, num: usize, started: Instant) -> Response {
    let Some(q) = q.filter(|q| !q.trim().is_empty()) else {
        return serp_error(StatusCode::BAD_REQUEST, "Missing query `q` parameter.");
    };
    if q.len() > MAX_QUERY_BYTES {
        return serp_error(
            StatusCode::BAD_REQUEST,
            format!(
                "Query `q` is {} bytes; the limit is {MAX_QUERY_BYTES}.",
                q.len()
            ),
        );
    }
    let hits = match state.engine.search_text(q, num) {
        Ok(hits) => hits,
        Err(err) => return serp_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}")),
    };
    let organic_results: Vec<serpapi::OrganicResult> = hits
        .into_iter()
        .enumerate()
        .map(|(i, hit)| {
            let page = &state.engine.pages()[hit.page];
            serpapi::OrganicResult {
                position: i as u32 + 1,
                title: page.title.clone(),
                link: page.url.clone(),
                displayed_link: Some(page.url.clone()),
                snippet: Some(hit.snippet),
            }
        })
        .collect();
    let error = organic_results
        .is_empty()
        .then(|| serpapi::NO_RESULTS.to_string());
    Json(serpapi::GoogleResponse {
        search_metadata: serpapi::metadata("local", started.elapsed().as_secs_f64()),
        organic_results,
        error,
        ..Default::default()
    })
    .into_response()
}

/// The image behind a Lens `url`: only this engine's own uploads and corpus
/// images, since the engine is offline.
fn resolve_image(state: &AppState, url: &str) -> Result<Bytes, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("Invalid image url {url:?}: {e}"))?;
    let ours = parsed.port_or_known_default() == Some(state.addr.port())
        && matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if !ours {
        return Err(format!(
            "Couldn't fetch {url:?}: the offline engine only reads its own /uploads and /corpus"
        ));
    }
    let path = parsed.path();
    let found = if let Some(name) = path.strip_prefix("/uploads/") {
        state.engine.uploaded(name).map(|(b, _)| b)
    } else if let Some(p) = path.strip_prefix("/corpus/") {
        state.engine.image_by_path(p).map(Bytes::copy_from_slice)
    } else {
        None
    };
    found.ok_or_else(|| format!("Couldn't fetch {url:?}: no such image"))
}

fn lens(state: &AppState, url: Option<&str>, num: usize, started: Instant) -> Response {
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return serp_error(StatusCode::BAD_REQUEST, "Missing `url` parameter.");
    };
    let bytes = match resolve_image(state, url) {
        Ok(b) => b,
        Err(msg) => return serp_error(StatusCode::BAD_REQUEST, msg),
    };
    let hits = match state.engine.search_image(&bytes, num) {
        Ok(h) => h,
        Err(err) => return serp_error(StatusCode::BAD_REQUEST, format!("Invalid image: {err:#}")),
    };
    let visual_matches: Vec<serpapi::VisualMatch> = hits
        .into_iter()
        .enumerate()
        .map(|(i, hit)| {
            let page = &state.engine.pages()[hit.page];
            let source = url::Url::parse(&page.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string));
            serpapi::VisualMatch {
                position: i as u32 + 1,
                title: page.title.clone(),
                link: page.url.clone(),
                source: source.unwrap_or_else(|| page.url.clone()),
                thumbnail: format!("{}/thumbnails/{}.jpg", state.base_url, hit.image),
                thumbnail_width: None,
                thumbnail_height: None,
            }
        })
        .collect();
    let error = visual_matches
        .is_empty()
        .then(|| serpapi::LENS_NO_RESULTS.to_string());
    Json(serpapi::LensResponse {
        search_metadata: serpapi::metadata("local", started.elapsed().as_secs_f64()),
        visual_matches,
        error,
    })
    .into_response()
}

fn image_response(bytes: Bytes, mime: &'static str) -> Response {
    ([(header::CONTENT_TYPE, mime)], bytes).into_response()
}

async fn corpus_image(State(state): State<Arc<AppState>>, Path(path): Path<String>) -> Response {
    match state.engine.image_by_path(&path) {
        Some(bytes) => image_response(Bytes::copy_from_slice(bytes), super::mime_of(bytes)),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn thumbnail(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let thumb = name
        .strip_suffix(".jpg")
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|i| state.engine.thumbnail(i));
    match thumb {
        Some(bytes) => image_response(bytes, "image/jpeg"),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn upload(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    // Checking the image decodes its header: CPU work, off the workers.
    blocking(move || match state.engine.upload(body) {
        Ok(name) => {
            Json(serde_json::json!({ "url": format!("{}/uploads/{name}", state.base_url) }))
                .into_response()
        }
        Err(err) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": format!("{err:#}") })),
        )
            .into_response(),
    })
    .await
}

async fn uploaded(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match state.engine.uploaded(&name) {
        Some((bytes, mime)) => image_response(bytes, mime),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn jina_error(code: StatusCode, name: &str, message: impl Into<String>) -> Response {
    (
        code,
        Json(jina::ErrorResponse::new(code.as_u16(), name, message)),
    )
        .into_response()
}

/// Jina Reader: the target URL is everything after the first `/`, query included.
async fn read_page(State(state): State<Arc<AppState>>, headers: HeaderMap, uri: Uri) -> Response {
    let target = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .trim_start_matches('/');
    if target.is_empty() {
        return jina_error(
            StatusCode::BAD_REQUEST,
            "ParamValidationError",
            "No URL provided",
        );
    }
    let Some(page) = state.engine.page_by_url(target) else {
        return jina_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "AssertionFailureError",
            format!("Failed to goto {target}: not in the corpus"),
        );
    };
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        Json(jina::ReaderResponse::ok(jina::ReaderData {
            title: page.title.clone(),
            description: String::new(),
            url: page.url.clone(),
            content: page.text.clone(),
            usage: jina::Usage {
                tokens: page.text.split_whitespace().count() as u64,
            },
        }))
        .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            jina::plain_text(&page.title, &page.url, &page.text),
        )
            .into_response()
    }
}
