use crate::HttpError;
use std::time::SystemTime;

/// A complete response: the body is read to its end (or refused when too large).
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Header names are lower-case, as `wasi:http` gives them.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as UTF-8.
    pub fn text(&self) -> Result<&str, HttpError> {
        std::str::from_utf8(&self.body)
            .map_err(|e| HttpError::Protocol(format!("response body is not UTF-8: {e}")))
    }

    /// `Retry-After` in seconds from now, in either of its forms.
    pub fn retry_after_secs(&self) -> Option<u32> {
        self.header("retry-after")
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
    }
}

/// Parses `Retry-After` as delta-seconds or as an HTTP-date (seconds from
/// `now` until then; a date past is 0). Anything else gives `None`, and
/// callers fall back to their own back-off.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<u32> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    // Absurdly long waits saturate rather than fail.
    let saturate = |n: u64| n.min(u32::MAX as u64) as u32;
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(v.parse::<u64>().map_or(u32::MAX, saturate));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    // Round up: waiting a fraction short would be refused again.
    let wait = at.duration_since(now).unwrap_or_default();
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Some(saturate(whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after(" 120 ", now), Some(120));
        assert_eq!(
            parse_retry_after("99999999999999999999", now),
            Some(u32::MAX)
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        // The HTTP-date form, in its three spellings; a date past is 0.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(120)
        );
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:30 GMT", now),
            Some(30)
        );
        assert_eq!(parse_retry_after("Wed Oct 21 07:29:00 2015", now), Some(60));
        assert_eq!(
            parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", now),
            Some(0)
        );
        let half = now - std::time::Duration::from_millis(500);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:01 GMT", half),
            Some(2),
            "a fraction of a second rounds up"
        );
        let r = Response {
            status: 429,
            headers: vec![("Retry-After".into(), "7".into())],
            body: vec![],
        };
        assert_eq!(r.retry_after_secs(), Some(7));
        assert_eq!(r.header("RETRY-AFTER"), Some("7"));
    }
}
