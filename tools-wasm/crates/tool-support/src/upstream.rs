//! One upstream exchange: send (following a few redirects, which the host
//! re-checks against the allow-list), then sort the outcome into a
//! `search-error`: 429 → rate-limited (with Retry-After), other non-2xx →
//! upstream (status and the body's own message), a body that is not what
//! was asked for → malformed-response.

use crate::types::{SearchError, UpstreamError};
use guest_http::{HttpError, Method, Request, Response, send};
use serde::de::DeserializeOwned;

const MAX_REDIRECTS: usize = 3;
const MESSAGE_CHARS: usize = 300;

pub fn http_error(e: HttpError) -> SearchError {
    match e {
        HttpError::Denied(m) => SearchError::Denied(m),
        HttpError::Timeout(m) => SearchError::Timeout(m),
        HttpError::BodyTooLarge { limit } => {
            SearchError::MalformedResponse(format!("response body larger than {limit} bytes"))
        }
        HttpError::Protocol(m) => SearchError::MalformedResponse(m),
        // The host's response-size cap cuts the body stream; guest-http sees
        // only a stream error carrying the host's message.
        HttpError::Connection(m) if m.contains("body size exceeds limit") => {
            SearchError::MalformedResponse(format!(
                "response body larger than the host allows: {m}"
            ))
        }
        // No answer (could not connect, or the connection broke): status 0,
        // which the host reads as worth a retry, not as a status the
        // upstream sent.
        HttpError::Connection(m) => SearchError::Upstream(UpstreamError {
            status: 0,
            message: m,
        }),
        HttpError::InvalidRequest(m) => SearchError::InvalidInput(m),
    }
}

/// Sends `req`, following up to three redirects. A redirect to a host that
/// is not on the tool's list is refused by the host and comes back `Denied`.
pub fn fetch(req: Request, max_bytes: usize) -> Result<Response, SearchError> {
    let mut req = req;
    for _ in 0..=MAX_REDIRECTS {
        let resp = send(req.clone(), max_bytes).map_err(http_error)?;
        if !matches!(resp.status, 301 | 302 | 303 | 307 | 308) {
            return Ok(resp);
        }
        let location = resp.header("location").ok_or_else(|| {
            SearchError::MalformedResponse(format!("{} redirect without a location", resp.status))
        })?;
        req.url = resolve(&req.url, location);
        if resp.status == 303 {
            req.method = Method::Get;
            req.body.clear();
        }
    }
    Err(SearchError::Upstream(UpstreamError {
        status: 310,
        message: format!("more than {MAX_REDIRECTS} redirects"),
    }))
}

/// `location` against `base`: absolute URLs as they are, `/path` on the same origin.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let origin_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    if location.starts_with('/') {
        format!("{}{location}", &base[..origin_end])
    } else {
        let dir_end = base
            .rfind('/')
            .filter(|&i| i >= origin_end)
            .unwrap_or(origin_end);
        format!("{}/{location}", &base[..dir_end])
    }
}

/// The error for a non-2xx response, with the upstream's own message when
/// its body carries one (`{"error": "…"}`, `{"error": {"message": …}}`, `{"message": …}`).
pub fn status_error(resp: &Response) -> SearchError {
    if resp.status == 429 {
        return SearchError::RateLimited(resp.retry_after_secs());
    }
    SearchError::Upstream(UpstreamError {
        status: resp.status,
        message: body_message(&resp.body),
    })
}

fn body_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
            v.get("error")
                .and_then(|e| s(e).or_else(|| e.get("message").and_then(s)))
                .or_else(|| v.get("readableMessage").and_then(s))
                .or_else(|| v.get("message").and_then(s))
        });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    crate::truncate_chars(text.trim(), MESSAGE_CHARS)
}

/// A 2xx JSON body as `T`; anything else is the matching `search-error`.
pub fn fetch_json<T: DeserializeOwned>(req: Request, max_bytes: usize) -> Result<T, SearchError> {
    let resp = fetch(req.header("accept", "application/json"), max_bytes)?;
    parse_json(&resp)
}

pub(crate) fn parse_json<T: DeserializeOwned>(resp: &Response) -> Result<T, SearchError> {
    if !resp.is_success() {
        return Err(status_error(resp));
    }
    let ctype = resp.header("content-type").unwrap_or("");
    if !ctype.to_ascii_lowercase().contains("json") {
        let shown = if ctype.is_empty() {
            "no content type"
        } else {
            ctype
        };
        return Err(SearchError::MalformedResponse(format!(
            "expected JSON, got {shown} ({} bytes)",
            resp.body.len()
        )));
    }
    serde_json::from_slice(&resp.body).map_err(|e| {
        let what = if e.is_eof() {
            "truncated JSON"
        } else {
            "invalid JSON"
        };
        SearchError::MalformedResponse(format!("{what}: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, ctype: &str, body: &str) -> Response {
        Response {
            status,
            headers: vec![
                ("content-type".into(), ctype.into()),
                ("retry-after".into(), "9".into()),
            ],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn sorts_outcomes() {
        #[derive(serde::Deserialize, Debug)]
        struct X {
            #[allow(dead_code)]
            a: u32,
        }
        assert!(
            parse_json::<X>(&resp(200, "application/json; charset=utf-8", "{\"a\":1}")).is_ok()
        );
        assert!(matches!(
            parse_json::<X>(&resp(429, "application/json", "{}")),
            Err(SearchError::RateLimited(Some(9)))
        ));
        match parse_json::<X>(&resp(503, "application/json", "{\"error\":\"overloaded\"}")) {
            Err(SearchError::Upstream(u)) => {
                assert_eq!((u.status, u.message.as_str()), (503, "overloaded"))
            }
            other => panic!("{other:?}"),
        }
        match parse_json::<X>(&resp(
            401,
            "application/json",
            "{\"error\":{\"message\":\"bad key\",\"type\":\"x\"}}",
        )) {
            Err(SearchError::Upstream(u)) => assert_eq!(u.message, "bad key"),
            other => panic!("{other:?}"),
        }
        match parse_json::<X>(&resp(200, "text/html", "<html>")) {
            Err(SearchError::MalformedResponse(m)) => assert!(m.contains("text/html"), "{m}"),
            other => panic!("{other:?}"),
        }
        match parse_json::<X>(&resp(200, "application/json", "{\"a\":")) {
            Err(SearchError::MalformedResponse(m)) => assert!(m.contains("truncated"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resolves_redirects() {
        assert_eq!(resolve("http://a:1/x/y?q", "https://b/z"), "https://b/z");
        assert_eq!(resolve("http://a:1/x/y", "/z"), "http://a:1/z");
        assert_eq!(resolve("http://a:1/x/y", "z"), "http://a:1/x/z");
        assert_eq!(resolve("http://a:1", "z"), "http://a:1/z");
    }
}
