//! The offline search engine: a corpus of pages and images, a BM25 text
//! index and a visual-similarity image index, served over HTTP in the wire
//! formats of SerpApi (Google and Google Lens) and Jina Reader. The same
//! `.wasm` tools run against it with only their base URLs changed.

mod connection;
pub mod corpus;
pub mod image_index;
mod server;
pub mod text_index;

pub use connection::ServeLimits;
pub use server::{RunningEngine, serve, serve_with};

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
/// Uploaded query images kept in memory (oldest dropped first), by count
/// and by bytes: 1,024 uploads of 20 MiB each would be 20 GiB.
const MAX_UPLOADS: usize = 1024;
const MAX_UPLOAD_TOTAL_BYTES: usize = 256 << 20;

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
    bytes: usize,
}

impl Uploads {
    /// Keeps `bytes` under `name`, dropping the oldest uploads past either
    /// limit (the newest is always kept).
    fn keep(&mut self, name: &str, bytes: Bytes, mime: &'static str, count: usize, total: usize) {
        if self.by_name.contains_key(name) {
            return;
        }
        self.bytes += bytes.len();
        self.by_name.insert(name.to_string(), (bytes, mime));
        self.order.push_back(name.to_string());
        while self.order.len() > count || (self.bytes > total && self.order.len() > 1) {
            let old = self.order.pop_front().expect("non-empty");
            if let Some((b, _)) = self.by_name.remove(&old) {
                self.bytes -= b.len();
            }
        }
    }
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
        // The magic bytes alone would keep junk after a PNG signature.
        mmsr_trainer::data::check_image(&bytes)
            .map_err(|e| anyhow::anyhow!("uploaded image: {e}"))?;
        let name = format!("{}.{ext}", hex::encode(Sha256::digest(&bytes)));
        self.uploads.lock().expect("uploads lock poisoned").keep(
            &name,
            bytes,
            mime,
            MAX_UPLOADS,
            MAX_UPLOAD_TOTAL_BYTES,
        );
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

#[cfg(test)]
mod uploads_tests {
    use super::*;

    #[test]
    fn uploads_are_capped_by_count_and_by_bytes() {
        let mut u = Uploads::default();
        for (i, size) in [10, 10, 10, 25].into_iter().enumerate() {
            u.keep(
                &format!("u{i}"),
                Bytes::from(vec![0u8; size]),
                "image/png",
                3,
                40,
            );
        }
        // u0 went for the count, u1 for the bytes (10 + 10 + 25 > 40).
        assert_eq!(u.order, ["u2", "u3"]);
        assert_eq!(u.bytes, 35);
        // One upload over the byte limit is still kept: it is the newest.
        u.keep("big", Bytes::from(vec![0u8; 100]), "image/png", 3, 40);
        assert_eq!((u.order.len(), u.bytes), (1, 100));
    }
}
