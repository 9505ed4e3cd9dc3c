//! Blocking HTTP for mmsr's wasm tools, on the raw `wasi:http` bindings (`wasip2`).
//!
//! Every tool talks to its upstream through this crate, so each request is
//! framed the same way and every failure arrives as a typed [`HttpError`].
//!
//! # Why not `wstd`
//! `wstd` 0.6 writes the request body while it waits for the response. For a
//! GET, the host sends a zero-length body and drops the body channel first, so
//! the guest's write fails and the call surfaces as "connection reset" (it
//! also hides `HttpRequestDenied`). Here the outgoing body is written and
//! finished *before* `outgoing-handler.handle` is called, and only a body too
//! large for the host's buffer is streamed after it.
//!
//! # API
//! ```ignore
//! use guest_http::{send, Request, HttpError};
//!
//! // GET with a header; refuse bodies over 1 MiB.
//! let resp = send(
//!     Request::get("https://serpapi.com/search.json?q=kittens").header("accept", "application/json"),
//!     1 << 20,
//! )?;
//! if resp.status == 429 {
//!     let wait_s: Option<u32> = resp.retry_after_secs();
//! }
//! let body: &str = resp.text()?;
//!
//! // POST a JSON body with a per-request timeout.
//! let resp = send(
//!     Request::post("https://llm.example/v1/chat/completions")
//!         .header("content-type", "application/json")
//!         .body(br#"{"model":"m"}"#.to_vec())
//!         .timeout(std::time::Duration::from_secs(30)),
//!     4 << 20,
//! )?;
//!
//! // Query strings: encode each component.
//! let url = format!("https://host/search?q={}", guest_http::encode_component("a b&c"));
//! ```
//!
//! - [`Request`]: `get(url)`, `post(url)`, `new(method, url)`, then `.header(k, v)`
//!   (repeatable), `.body(bytes)`, `.timeout(d)` (connect, first byte and
//!   between bytes; the host clamps it further).
//! - [`send`]`(req, max_body_bytes)` → [`Response`] `{ status, headers, body }`.
//!   A body longer than `max_body_bytes` is [`HttpError::BodyTooLarge`]; nothing is
//!   truncated silently.
//! - [`Response::header`] (case-insensitive, first value), [`Response::text`] (UTF-8),
//!   [`Response::is_success`], [`Response::retry_after_secs`] (`Retry-After` as
//!   delta-seconds or an HTTP-date; see [`parse_retry_after`]).
//! - [`HttpError`]: `Denied` (the host's policy refused: host not on the allow-list,
//!   a private address, ...), `Timeout`, `Connection`, `BodyTooLarge`, `Protocol`,
//!   `InvalidRequest` (a URL or header this crate could not frame). Map these to the
//!   tool's `search-error` variant of the same name; [`HttpError::is_denied`] and
//!   [`HttpError::is_timeout`] help.
//! - Secrets are never passed here: the host adds API keys to requests bound for
//!   the tool's allowed host, as its manifest says.

mod encode;
mod error;
mod request;
mod response;
mod transport;

pub use encode::encode_component;
pub use error::HttpError;
pub use request::{Method, Request};
pub use response::{Response, parse_retry_after};
pub use transport::send;
