//! Native mirrors of the WIT records in `wit/types.wit`, so pipelines and
//! caches do not depend on generated bindings.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebResult {
    pub title: String,
    pub url: String,
    pub snippet: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageResult {
    pub title: String,
    pub page_url: String,
    pub thumbnail: Vec<u8>,
    pub mime_type: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageText {
    pub url: String,
    pub title: Option<String>,
    pub text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInput {
    pub url: Option<String>,
    pub bytes: Option<Vec<u8>>,
    pub mime_type: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToolKind {
    TextSearch,
    ImageSearch,
    PageReader,
    Summarizer,
}

impl ToolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolKind::TextSearch => "text-search",
            ToolKind::ImageSearch => "image-search",
            ToolKind::PageReader => "page-reader",
            ToolKind::Summarizer => "summarizer",
        }
    }
}

impl std::fmt::Display for ToolKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ToolKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "text-search" => ToolKind::TextSearch,
            "image-search" => ToolKind::ImageSearch,
            "page-reader" => ToolKind::PageReader,
            "summarizer" => ToolKind::Summarizer,
            other => {
                return Err(format!(
                    "unknown tool kind {other:?} (expected text-search, image-search, page-reader or summarizer)"
                ));
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolMetadata {
    pub name: String,
    pub version: String,
    pub kind: ToolKind,
    pub description: String,
    pub config_keys: Vec<String>,
    pub outbound_hosts: Vec<String>,
}

/// Every way a tool call can fail. The first group is what the guest itself
/// returned (the WIT `search-error`); the rest is what the host saw.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ToolError {
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("rate limited{}", .retry_after_s.map(|s| format!(" (retry after {s}s)")).unwrap_or_default())]
    RateLimited { retry_after_s: Option<u32> },
    /// `status` 0: no HTTP answer came (the connection failed or broke).
    #[error("{}", upstream_text(*.status, .message))]
    Upstream { status: u16, message: String },
    #[error("malformed upstream response: {0}")]
    MalformedResponse(String),
    #[error("tool internal error: {0}")]
    Internal(String),
    /// The guest trapped: a panic, an interrupted loop, memory over its limit.
    #[error("tool {tool} trapped: {reason}")]
    Trap { tool: String, reason: String },
    #[error("no tool named {0:?} in the manifest")]
    UnknownTool(String),
    #[error("tool {tool} is a {actual}, not a {expected}")]
    WrongKind {
        tool: String,
        expected: ToolKind,
        actual: ToolKind,
    },
    /// The circuit breaker is open or the concurrency cap is full.
    #[error("tool {tool} unavailable: {reason}")]
    Unavailable { tool: String, reason: String },
}

fn upstream_text(status: u16, message: &str) -> String {
    match status {
        0 => format!("upstream connection failed: {message}"),
        s => format!("upstream answered {s}: {message}"),
    }
}

impl ToolError {
    /// Worth retrying: rate limits, 5xx, broken connections and time-outs.
    pub fn is_transient(&self) -> bool {
        match self {
            ToolError::RateLimited { .. } | ToolError::Timeout(_) => true,
            ToolError::Upstream { status, .. } => *status >= 500 || *status == 0,
            _ => false,
        }
    }
}
