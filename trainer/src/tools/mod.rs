//! The trainer's view of search: a small async trait. The host implements it
//! with wasm tool pipelines; tests use in-process fakes. Nothing here knows
//! how a search is carried out.

mod fake;

pub use fake::{FakeSearchTools, FakeToolCall};

use std::future::Future;
use std::pin::Pin;

/// The image the policy asked to search with (`<search><img></search>` always
/// means the user's original image).
#[derive(Clone, Debug)]
pub struct ImageQuery {
    /// Encoded image bytes (JPEG/PNG) as stored in the dataset row.
    pub bytes: Vec<u8>,
    /// A public URL for the same image, when the dataset has one (`image_urls`).
    pub url: Option<String>,
}

/// One piece of what the environment shows the model, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum ObservationPart {
    Text(String),
    /// An encoded image (e.g. a result thumbnail) that the model sees as vision tokens.
    Image(Vec<u8>),
}

/// What a search returns to the rollout: the body of the `<information>` block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolObservation {
    pub parts: Vec<ObservationPart>,
    /// Set when the search failed; `parts` then holds the message the model sees.
    pub error: Option<String>,
}

impl ToolObservation {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            parts: vec![ObservationPart::Text(text.into())],
            error: None,
        }
    }

    /// The text parts joined, for logs and tests.
    pub fn text_content(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                ObservationPart::Text(t) => Some(t.as_str()),
                ObservationPart::Image(_) => None,
            })
            .collect::<Vec<_>>()
            .join("")
    }

    /// What the model was shown, as text: each image as `<image>`. For the
    /// run's logs of rollouts and eval reports.
    pub fn display_text(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                ObservationPart::Text(t) => t.as_str(),
                ObservationPart::Image(_) => "<image>",
            })
            .collect()
    }

    pub fn image_count(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| matches!(p, ObservationPart::Image(_)))
            .count()
    }
}

pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = ToolObservation> + Send + 'a>>;

/// Search as the environment offers it to the policy. Implementations never
/// fail: an error becomes an observation telling the model to reason alone.
pub trait SearchTools: Send + Sync {
    fn image_search<'a>(&'a self, image: &'a ImageQuery) -> ToolFuture<'a>;
    fn text_search<'a>(&'a self, query: &'a str) -> ToolFuture<'a>;
}
