//! The search pipelines the trainer sees, over any [`ToolInvoker`]:
//! - text: search top-k → read the pages concurrently → summarise each → one message;
//! - image: Lens top-k → a message with the thumbnails as images.
//!
//! A failed search becomes [`format::SEARCH_ERROR_MESSAGE`]; every search
//! has a deadline, so nothing here crashes or hangs the rollout.

mod build;
pub mod config;
pub mod format;
mod image_host;

pub use build::point_at_engine;
pub use config::{Backend, CacheConfig, Roles, SearchConfig};
pub use image_host::ImageHosting;

use crate::search_engine::RunningEngine;
use crate::tools::{ImageInput, ImageResult, ToolError, ToolInvoker, WebResult};
use format::Summarised;
use futures::future::join_all;
use mmsr_trainer::tools::{ImageQuery, SearchTools, ToolFuture, ToolObservation};
use std::sync::Arc;
use std::time::Duration;

pub struct SearchPipeline {
    invoker: Arc<dyn ToolInvoker>,
    roles: Roles,
    top_k: u32,
    image_top_k: u32,
    max_page_chars: u32,
    max_summary_chars: u32,
    deadline: Duration,
    hosting: ImageHosting,
    /// The in-process engine of `backend = "local"`, kept alive with the pipeline.
    engine: Option<RunningEngine>,
}

impl SearchPipeline {
    /// A pipeline over `invoker` (usually the wasm runtime wrapped in the
    /// cache and reliability layers) with the roles and limits of `config`.
    pub fn new(invoker: Arc<dyn ToolInvoker>, config: &SearchConfig) -> Self {
        Self {
            invoker,
            roles: config.tools.clone(),
            top_k: config.top_k,
            image_top_k: config.image_top_k,
            max_page_chars: config.max_page_chars,
            max_summary_chars: config.max_summary_chars,
            deadline: config.deadline(),
            hosting: match &config.image_upload_url {
                Some(url) => ImageHosting::upload_to(url.clone()),
                None => ImageHosting::None,
            },
            engine: None,
        }
    }

    /// Query images without a URL are hosted this way for Lens.
    pub fn with_image_hosting(mut self, hosting: ImageHosting) -> Self {
        self.hosting = hosting;
        self
    }

    /// Keeps `engine` running as long as the pipeline.
    pub fn with_engine(mut self, engine: RunningEngine) -> Self {
        self.engine = Some(engine);
        self
    }

    pub fn engine(&self) -> Option<&RunningEngine> {
        self.engine.as_ref()
    }

    pub fn invoker(&self) -> &Arc<dyn ToolInvoker> {
        &self.invoker
    }

    /// Text search, or the error that stopped it.
    pub async fn run_text(&self, query: &str) -> Result<ToolObservation, ToolError> {
        let query = query.trim();
        if query.is_empty() {
            return Err(ToolError::InvalidInput("empty text-search query".into()));
        }
        let results = self
            .invoker
            .text_search(&self.roles.text_search, query, self.top_k)
            .await?;
        let summaries = join_all(results.iter().map(|r| self.summary_of(query, r))).await;
        let items: Vec<Summarised<'_>> = results
            .iter()
            .zip(summaries)
            .map(|(result, summary)| Summarised { result, summary })
            .collect();
        Ok(format::text_results(query, &items))
    }

    /// The page's summary; the search snippet when the page cannot be read
    /// or summarised (one bad page must not sink the search).
    async fn summary_of(&self, query: &str, result: &WebResult) -> String {
        let fallback = || {
            if result.snippet.trim().is_empty() {
                "(no summary available)".to_string()
            } else {
                result.snippet.clone()
            }
        };
        if result.url.is_empty() {
            return fallback();
        }
        let page = match self
            .invoker
            .read_page(&self.roles.page_reader, &result.url, self.max_page_chars)
            .await
        {
            Ok(page) if !page.text.trim().is_empty() => page,
            Ok(_) => return fallback(),
            Err(err) => {
                tracing::warn!(url = %result.url, error = %err, "page read failed; using the snippet");
                return fallback();
            }
        };
        match self
            .invoker
            .summarize(&self.roles.summarizer, query, &page, self.max_summary_chars)
            .await
        {
            Ok(summary) if !summary.trim().is_empty() => summary,
            Ok(_) => fallback(),
            Err(err) => {
                tracing::warn!(url = %result.url, error = %err, "summary failed; using the snippet");
                fallback()
            }
        }
    }

    /// Image search, or the error that stopped it.
    pub async fn run_image(&self, image: &ImageQuery) -> Result<ToolObservation, ToolError> {
        if image.bytes.is_empty() && image.url.is_none() {
            return Err(ToolError::InvalidInput(
                "image search without an image".into(),
            ));
        }
        let url = match self.hosting.url_for(&image.bytes).await? {
            Some(hosted) => Some(hosted),
            None => image.url.clone(),
        };
        let input = ImageInput {
            url,
            mime_type: image::guess_format(&image.bytes)
                .ok()
                .map(|f| f.to_mime_type().to_string()),
            bytes: (!image.bytes.is_empty()).then(|| image.bytes.clone()),
        };
        let mut results = self
            .invoker
            .image_search(&self.roles.image_search, &input, self.image_top_k)
            .await?;
        results.iter_mut().for_each(drop_undecodable_thumbnail);
        Ok(format::image_results(&results))
    }

    async fn guarded(
        &self,
        kind: &str,
        search: impl Future<Output = Result<ToolObservation, ToolError>>,
    ) -> ToolObservation {
        match tokio::time::timeout(self.deadline, search).await {
            Ok(Ok(obs)) => obs,
            Ok(Err(err)) => {
                tracing::warn!(kind, error = %err, "search failed; the model is told to reason alone");
                format::error_observation(err.to_string())
            }
            Err(_) => {
                tracing::warn!(
                    kind,
                    deadline_s = self.deadline.as_secs_f64(),
                    "search passed its deadline"
                );
                format::error_observation(format!(
                    "{kind} search passed its {:?} deadline",
                    self.deadline
                ))
            }
        }
    }
}

/// The model must only be shown whole images that decode (the trainer's own
/// check, which also refuses files cut short); a broken thumbnail leaves its
/// title.
fn drop_undecodable_thumbnail(r: &mut ImageResult) {
    if r.thumbnail.is_empty() {
        return;
    }
    let broken = mmsr_trainer::data::check_image(&r.thumbnail)
        .err()
        .or_else(|| {
            image::load_from_memory(&r.thumbnail)
                .err()
                .map(|e| e.to_string())
        });
    if let Some(why) = broken {
        tracing::warn!(page = %r.page_url, bytes = r.thumbnail.len(), "thumbnail dropped: {why}");
        r.thumbnail.clear();
        r.mime_type.clear();
    }
}

impl SearchTools for SearchPipeline {
    fn image_search<'a>(&'a self, image: &'a ImageQuery) -> ToolFuture<'a> {
        Box::pin(self.guarded("image", self.run_image(image)))
    }

    fn text_search<'a>(&'a self, query: &'a str) -> ToolFuture<'a> {
        Box::pin(self.guarded("text", self.run_text(query)))
    }
}

#[cfg(test)]
mod tests;
