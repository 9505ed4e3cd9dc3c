//! In-process search tools for tests and benchmarks: scripted answers and a
//! fixed latency (or one per call), with a log of every call.

use super::{ImageQuery, SearchTools, ToolFuture, ToolObservation};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub enum FakeToolCall {
    Image {
        bytes_len: usize,
        url: Option<String>,
    },
    Text(String),
}

type Responder = dyn Fn(&FakeToolCall) -> ToolObservation + Send + Sync;
type Latency = dyn Fn(&FakeToolCall) -> Duration + Send + Sync;

pub struct FakeSearchTools {
    latency: Box<Latency>,
    respond: Box<Responder>,
    calls: Mutex<Vec<FakeToolCall>>,
}

impl FakeSearchTools {
    /// Answers every call with `respond(call)` after `latency`.
    pub fn new(
        latency: Duration,
        respond: impl Fn(&FakeToolCall) -> ToolObservation + Send + Sync + 'static,
    ) -> Self {
        Self {
            latency: Box::new(move |_| latency),
            respond: Box::new(respond),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Each call's latency is `latency_of(call)` instead, as real search
    /// APIs' vary.
    pub fn with_latency_of(
        mut self,
        latency_of: impl Fn(&FakeToolCall) -> Duration + Send + Sync + 'static,
    ) -> Self {
        self.latency = Box::new(latency_of);
        self
    }

    /// Echoes the call back as text.
    pub fn echo(latency: Duration) -> Self {
        Self::new(latency, |call| match call {
            FakeToolCall::Image { bytes_len, .. } => {
                ToolObservation::text(format!("image results for {bytes_len} bytes"))
            }
            FakeToolCall::Text(q) => ToolObservation::text(format!("text results for {q}")),
        })
    }

    pub fn calls(&self) -> Vec<FakeToolCall> {
        self.calls.lock().expect("fake tool log poisoned").clone()
    }

    fn answer(&self, call: FakeToolCall) -> ToolFuture<'_> {
        let latency = (self.latency)(&call);
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let out = (self.respond)(&call);
            self.calls
                .lock()
                .expect("fake tool log poisoned")
                .push(call);
            out
        })
    }
}

impl SearchTools for FakeSearchTools {
    fn image_search<'a>(&'a self, image: &'a ImageQuery) -> ToolFuture<'a> {
        self.answer(FakeToolCall::Image {
            bytes_len: image.bytes.len(),
            url: image.url.clone(),
        })
    }

    fn text_search<'a>(&'a self, query: &'a str) -> ToolFuture<'a> {
        self.answer(FakeToolCall::Text(query.to_string()))
    }
}
