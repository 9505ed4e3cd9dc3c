//! The offline search engine: a corpus of pages and images, a BM25 text
//! index and a visual-similarity image index, served over HTTP in the wire
//! formats of SerpApi (Google and Google Lens) and Jina Reader. The same
//! `.wasm` tools run against it with only their base URLs changed.

pub mod corpus;
pub mod image_index;
mod server;
pub mod text_index;

pub use server::{RunningEngine, serve};

use anyhow::Context;
use bytes::Bytes;
use corpus::{Corpus, Page};
use image_index::{Fingerprint, ImageIndex};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use text_index::{TextHit, TextIndex};

/// Thumbnails fit in this square, as Lens thumbnails roughly do.
const THUMBNAIL_SIDE: u32 = 256;
/// Uploaded query images kept in memory (oldest dropped first).
const MAX_UPLOADS: usize = 1024;

pub struct SearchEngine {
    corpus: Corpus,
    text: TextIndex,
    images: ImageIndex,
    thumbnails: Vec<OnceLock<Option<Bytes>>>,
    uploads: Mutex<Uploads>,
}

#[derive(Default)]
struct Uploads {
    by_name: HashMap<String, (Bytes, &'static str)>,
    order: VecDeque<String>,
}

/// A page whose image matched a Lens query.
#[derive(Clone, Debug, PartialEq)]
pub struct VisualHit {
    pub page: usize,
    pub image: usize,
    pub distance: f32,
}

impl SearchEngine {
    /// Loads and indexes the corpus in `dir`; fails naming the bad line or image.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let corpus = Corpus::open(dir)?;
        let text = TextIndex::build(&corpus.pages)?;
        let fingerprints = corpus
            .images
            .iter()
            .map(|img| {
                Fingerprint::of_bytes(&img.bytes).with_context(|| {
                    format!(
                        "corpus image {:?} of page {:?}",
                        img.path, corpus.pages[img.page].url
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        tracing::info!(pages = corpus.pages.len(), images = corpus.images.len(), dir = %dir.display(), "search corpus loaded");
        Ok(Self {
            thumbnails: corpus.images.iter().map(|_| OnceLock::new()).collect(),
            images: ImageIndex::new(fingerprints),
            text,
            corpus,
            uploads: Mutex::new(Uploads::default()),
        })
    }

    pub fn pages(&self) -> &[Page] {
        &self.corpus.pages
    }

    pub fn page_by_url(&self, url: &str) -> Option<&Page> {
        let trimmed = url.trim_end_matches('/');
        self.corpus
            .pages
            .iter()
            .find(|p| p.url == url || p.url.trim_end_matches('/') == trimmed)
    }

    pub fn search_text(&self, query: &str, k: usize) -> anyhow::Result<Vec<TextHit>> {
        self.text.search(query, k)
    }

    /// Pages with an image visually close to `bytes`, best first, one hit per page.
    pub fn search_image(&self, bytes: &[u8], k: usize) -> anyhow::Result<Vec<VisualHit>> {
        let query = Fingerprint::of_bytes(bytes)?;
        let mut seen = std::collections::HashSet::new();
        Ok(self
            .images
            .search(&query, k)
            .into_iter()
            .map(|h| VisualHit {
                page: self.corpus.images[h.image].page,
                image: h.image,
                distance: h.distance,
            })
            .filter(|h| seen.insert(h.page))
            .take(k)
            .collect())
    }

    pub fn image_path(&self, image: usize) -> &str {
        &self.corpus.images[image].path
    }

    /// The original bytes of a corpus image named by its path.
    pub fn image_by_path(&self, path: &str) -> Option<&[u8]> {
        self.corpus
            .images
            .iter()
            .find(|i| i.path == path)
            .map(|i| i.bytes.as_slice())
    }

    /// A JPEG thumbnail of corpus image `image`, made once.
    pub fn thumbnail(&self, image: usize) -> Option<Bytes> {
        let cell = self.thumbnails.get(image)?;
        cell.get_or_init(|| {
            let img = image::load_from_memory(&self.corpus.images[image].bytes).ok()?;
            let small = img.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).to_rgb8();
            let mut out = std::io::Cursor::new(Vec::new());
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
                .encode_image(&small)
                .ok()?;
            Some(Bytes::from(out.into_inner()))
        })
        .clone()
    }

    /// Keeps a query image so Lens can be given a URL for it; returns its
    /// content-addressed name. Refuses bytes that are not an image.
    pub fn upload(&self, bytes: Bytes) -> anyhow::Result<String> {
        let format =
            image::guess_format(&bytes).context("uploaded bytes are not a known image format")?;
        let (ext, mime) = match format {
            image::ImageFormat::Png => ("png", "image/png"),
            image::ImageFormat::Jpeg => ("jpg", "image/jpeg"),
            other => anyhow::bail!("uploaded image is {other:?}; only PNG and JPEG are served"),
        };
        let name = format!("{}.{ext}", hex::encode(Sha256::digest(&bytes)));
        let mut uploads = self.uploads.lock().expect("uploads lock poisoned");
        if !uploads.by_name.contains_key(&name) {
            uploads.by_name.insert(name.clone(), (bytes, mime));
            uploads.order.push_back(name.clone());
            while uploads.order.len() > MAX_UPLOADS {
                let old = uploads.order.pop_front().expect("non-empty");
                uploads.by_name.remove(&old);
            }
        }
        Ok(name)
    }

    pub fn uploaded(&self, name: &str) -> Option<(Bytes, &'static str)> {
        self.uploads
            .lock()
            .expect("uploads lock poisoned")
            .by_name
            .get(name)
            .cloned()
    }
}

/// The mime type of an image file, from its bytes.
pub fn mime_of(bytes: &[u8]) -> &'static str {
    match image::guess_format(bytes) {
        Ok(image::ImageFormat::Png) => "image/png",
        Ok(image::ImageFormat::Jpeg) => "image/jpeg",
        Ok(image::ImageFormat::Gif) => "image/gif",
        Ok(image::ImageFormat::WebP) => "image/webp",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
pub(crate) mod tests;
