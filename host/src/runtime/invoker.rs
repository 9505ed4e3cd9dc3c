//! [`ToolInvoker`] for wasm tools: one fresh instance per call, under the
//! tool's concurrency cap, CPU budget, memory cap and wall-clock timeout.

use super::bindings::types::SearchError;
use super::state::CallState;
use super::{KindPre, LoadedTool, ToolHost, convert, wall_timeout};
use crate::net::PolicyLog;
use crate::tools::{
    CallFuture, ImageInput, ImageResult, PageText, ToolError, ToolInvoker, ToolKind, WebResult,
};
use std::sync::Arc;
use wasmtime::Store;

enum Input<'a> {
    Text {
        query: &'a str,
        top_k: u32,
    },
    Image {
        image: &'a ImageInput,
        top_k: u32,
    },
    Read {
        url: &'a str,
        max_chars: u32,
    },
    Summarize {
        query: &'a str,
        page: &'a PageText,
        max_chars: u32,
    },
}

enum Output {
    Web(Vec<WebResult>),
    Images(Vec<ImageResult>),
    Page(PageText),
    Summary(String),
}

impl Input<'_> {
    fn kind(&self) -> ToolKind {
        match self {
            Input::Text { .. } => ToolKind::TextSearch,
            Input::Image { .. } => ToolKind::ImageSearch,
            Input::Read { .. } => ToolKind::PageReader,
            Input::Summarize { .. } => ToolKind::Summarizer,
        }
    }
}

type GuestResult = wasmtime::Result<Result<Output, SearchError>>;

impl ToolHost {
    async fn invoke(&self, name: &str, input: Input<'_>) -> Result<Output, ToolError> {
        let tool = self
            .get(name)
            .ok_or_else(|| ToolError::UnknownTool(name.to_string()))?;
        if tool.manifest.kind != input.kind() {
            return Err(ToolError::WrongKind {
                tool: name.to_string(),
                expected: input.kind(),
                actual: tool.manifest.kind,
            });
        }
        let limit = tool.manifest.limits.timeout();
        // A free slot needs no timer; only a full tool waits (up to its limit).
        let _permit = match tool.permits.try_acquire() {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(limit, tool.permits.acquire())
                .await
                .map_err(|_| ToolError::Unavailable {
                    tool: name.to_string(),
                    reason: format!(
                        "all {} concurrent slots stayed busy for {} ms",
                        tool.manifest.limits.concurrency,
                        limit.as_millis()
                    ),
                })?
                .map_err(|_| ToolError::Unavailable {
                    tool: name.to_string(),
                    reason: "tool unloaded".into(),
                })?,
        };
        let log = Arc::new(PolicyLog::default());
        let mut store = self
            .store(&tool.setup, log.clone())
            .map_err(|e| ToolError::Internal(format!("tool {name}: {e:#}")))?;
        let call = call_guest(&tool.pre, &mut store, input);
        let outcome = tokio::time::timeout(wall_timeout(limit), call).await;
        match outcome {
            Err(_) => Err(ToolError::Timeout(format!(
                "tool {name} did not finish within its {} ms limit",
                limit.as_millis()
            ))),
            Ok(Ok(Ok(out))) => Ok(out),
            Ok(Ok(Err(guest))) => Err(convert::guest_error(name, guest, &log)),
            Ok(Err(trap)) => Err(trap_error(&tool, store.data(), &trap)),
        }
    }

    /// Creates a store and instantiates the tool, calling nothing: what
    /// every call pays before the guest runs (for `bench tools`).
    pub async fn instantiate_only(&self, name: &str) -> Result<(), ToolError> {
        let tool = self
            .get(name)
            .ok_or_else(|| ToolError::UnknownTool(name.to_string()))?;
        let mut store = self
            .store(&tool.setup, Arc::new(PolicyLog::default()))
            .map_err(|e| ToolError::Internal(format!("{e:#}")))?;
        let r = match &tool.pre {
            KindPre::TextSearch(p) => p.instantiate_async(&mut store).await.map(drop),
            KindPre::ImageSearch(p) => p.instantiate_async(&mut store).await.map(drop),
            KindPre::PageReader(p) => p.instantiate_async(&mut store).await.map(drop),
            KindPre::Summarizer(p) => p.instantiate_async(&mut store).await.map(drop),
        };
        r.map_err(|e| trap_error(&tool, store.data(), &e))
    }
}

async fn call_guest(pre: &KindPre, store: &mut Store<CallState>, input: Input<'_>) -> GuestResult {
    Ok(match (pre, input) {
        (KindPre::TextSearch(p), Input::Text { query, top_k }) => {
            let i = p.instantiate_async(&mut *store).await?;
            i.mmsr_search_text_search()
                .call_search(&mut *store, query, top_k)
                .await?
                .map(|r| Output::Web(r.into_iter().map(convert::web_result).collect()))
        }
        (KindPre::ImageSearch(p), Input::Image { image, top_k }) => {
            let i = p.instantiate_async(&mut *store).await?;
            i.mmsr_search_image_search()
                .call_search(&mut *store, &convert::wit_image_input(image), top_k)
                .await?
                .map(|r| Output::Images(r.into_iter().map(convert::image_result).collect()))
        }
        (KindPre::PageReader(p), Input::Read { url, max_chars }) => {
            let i = p.instantiate_async(&mut *store).await?;
            i.mmsr_search_page_reader()
                .call_read(&mut *store, url, max_chars)
                .await?
                .map(|p| Output::Page(convert::page_text(p)))
        }
        (
            KindPre::Summarizer(p),
            Input::Summarize {
                query,
                page,
                max_chars,
            },
        ) => {
            let i = p.instantiate_async(&mut *store).await?;
            i.mmsr_search_summarizer()
                .call_summarize(&mut *store, query, &convert::wit_page_text(page), max_chars)
                .await?
                .map(Output::Summary)
        }
        _ => return Err(wasmtime::format_err!("tool kind and call kind differ")),
    })
}

/// Names the limit a trap hit, when it was one of ours.
fn trap_error(tool: &LoadedTool, state: &CallState, err: &wasmtime::Error) -> ToolError {
    let name = tool.manifest.name.clone();
    let limits = &tool.manifest.limits;
    if let Some(desired) = state.limits.memory_refused {
        return ToolError::Trap {
            tool: name,
            reason: format!(
                "memory limit of {} MiB exceeded (asked to grow to {} MiB)",
                limits.memory_mib,
                desired >> 20
            ),
        };
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => ToolError::Trap {
            tool: name,
            reason: format!(
                "CPU time limit of {} ms exceeded",
                limits.cpu_budget().as_millis()
            ),
        },
        Some(trap) => ToolError::Trap {
            tool: name,
            reason: match state.stderr_tail() {
                Some(tail) => format!("{trap} (guest stderr: {tail})"),
                None => trap.to_string(),
            },
        },
        None => {
            let msg = format!("{err:#}");
            if msg.contains("concurrent") && msg.contains("limit") {
                ToolError::Unavailable {
                    tool: name,
                    reason: msg,
                }
            } else {
                ToolError::Trap {
                    tool: name,
                    reason: msg,
                }
            }
        }
    }
}

impl ToolInvoker for ToolHost {
    fn text_search<'a>(
        &'a self,
        tool: &'a str,
        query: &'a str,
        top_k: u32,
    ) -> CallFuture<'a, Vec<WebResult>> {
        Box::pin(async move {
            match self.invoke(tool, Input::Text { query, top_k }).await? {
                Output::Web(r) => Ok(r),
                _ => Err(ToolError::Internal("unexpected output kind".into())),
            }
        })
    }

    fn image_search<'a>(
        &'a self,
        tool: &'a str,
        image: &'a ImageInput,
        top_k: u32,
    ) -> CallFuture<'a, Vec<ImageResult>> {
        Box::pin(async move {
            match self.invoke(tool, Input::Image { image, top_k }).await? {
                Output::Images(r) => Ok(r),
                _ => Err(ToolError::Internal("unexpected output kind".into())),
            }
        })
    }

    fn read_page<'a>(
        &'a self,
        tool: &'a str,
        url: &'a str,
        max_chars: u32,
    ) -> CallFuture<'a, PageText> {
        Box::pin(async move {
            match self.invoke(tool, Input::Read { url, max_chars }).await? {
                Output::Page(p) => Ok(p),
                _ => Err(ToolError::Internal("unexpected output kind".into())),
            }
        })
    }

    fn summarize<'a>(
        &'a self,
        tool: &'a str,
        query: &'a str,
        page: &'a PageText,
        max_chars: u32,
    ) -> CallFuture<'a, String> {
        Box::pin(async move {
            match self
                .invoke(
                    tool,
                    Input::Summarize {
                        query,
                        page,
                        max_chars,
                    },
                )
                .await?
            {
                Output::Summary(s) => Ok(s),
                _ => Err(ToolError::Internal("unexpected output kind".into())),
            }
        })
    }
}
