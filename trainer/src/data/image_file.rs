//! Image files named by a dataset row, read inside the image folder only:
//! a name is a path below the folder (cap-std refuses `..`, absolute paths
//! and symlinks that lead out), a regular file (a FIFO would block the
//! loader, a device would never end), and at most [`MAX_IMAGE_BYTES`].

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Far above any photo a VLM is fed; a file this large is a mistake.
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;

pub struct ImageFolder {
    path: PathBuf,
    dir: OnceLock<Result<Dir, String>>,
}

impl ImageFolder {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            dir: OnceLock::new(),
        }
    }

    /// The folder a dataset's image names are relative to: `image_dir` if
    /// set, else the dataset file's own folder. A bare file name's parent is
    /// `""`, which no directory API opens, so it becomes `.`.
    pub fn for_dataset(dataset: &Path, image_dir: Option<&Path>) -> Self {
        let beside = dataset
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::new(image_dir.unwrap_or(beside))
    }

    /// Opened on first use, so a dataset whose images are all embedded
    /// never needs the folder.
    fn dir(&self) -> Result<&Dir, String> {
        self.dir
            .get_or_init(|| {
                Dir::open_ambient_dir(&self.path, ambient_authority()).map_err(|e| {
                    format!("cannot open the image folder {}: {e}", self.path.display())
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    pub fn read(&self, name: &str) -> Result<Vec<u8>, String> {
        let dir = self.dir()?;
        let shown = || self.path.join(name).display().to_string();
        let meta = dir.metadata(name).map_err(|e| {
            if Path::new(name).is_absolute() || e.to_string().contains("outside of the filesystem")
            {
                format!(
                    "image {name} is outside the image folder {} (names are relative to it; set data.image_dir)",
                    self.path.display()
                )
            } else {
                format!("cannot read image {}: {e}", shown())
            }
        })?;
        if !meta.is_file() {
            return Err(format!("image {} is not a regular file", shown()));
        }
        if meta.len() > MAX_IMAGE_BYTES {
            return Err(format!(
                "image {} is {} MiB, above the {} MiB limit",
                shown(),
                meta.len() >> 20,
                MAX_IMAGE_BYTES >> 20
            ));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        dir.open(name)
            .and_then(|f| f.take(MAX_IMAGE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read image {}: {e}", shown()))?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_folder_and_name_regular_files() {
        let tmp = tempfile::tempdir().unwrap();
        let imgs = tmp.path().join("imgs");
        std::fs::create_dir_all(imgs.join("sub")).unwrap();
        std::fs::write(imgs.join("sub/a.png"), b"abc").unwrap();
        std::fs::write(tmp.path().join("secret.png"), b"no").unwrap();
        let folder = ImageFolder::new(&imgs);
        assert_eq!(folder.read("sub/a.png").unwrap(), b"abc");
        for name in ["../secret.png", "/etc/hostname", "sub/../../secret.png"] {
            let err = folder.read(name).unwrap_err();
            assert!(err.contains("outside the image folder"), "{name}: {err}");
        }
        assert!(
            folder
                .read("sub")
                .unwrap_err()
                .contains("not a regular file")
        );
        assert!(
            folder
                .read("none.png")
                .unwrap_err()
                .contains("cannot read image")
        );
        let big = std::fs::File::create(imgs.join("big.png")).unwrap();
        big.set_len(MAX_IMAGE_BYTES + 1).unwrap();
        assert!(
            folder
                .read("big.png")
                .unwrap_err()
                .contains("above the 64 MiB limit")
        );
        let missing = ImageFolder::new(&tmp.path().join("nope"));
        assert!(
            missing
                .read("a.png")
                .unwrap_err()
                .contains("cannot open the image folder")
        );
    }

    #[test]
    fn a_dataset_named_without_a_folder_reads_images_beside_it() {
        let beside = |p: &str, dir: Option<&str>| {
            ImageFolder::for_dataset(Path::new(p), dir.map(Path::new)).path
        };
        assert_eq!(beside("train.parquet", None), Path::new("."));
        assert_eq!(beside("data/train.parquet", None), Path::new("data"));
        assert_eq!(beside("/d/train.jsonl", None), Path::new("/d"));
        assert_eq!(beside("train.parquet", Some("imgs")), Path::new("imgs"));
        // And it opens: "." is this process's working directory.
        let folder = ImageFolder::for_dataset(Path::new("train.parquet"), None);
        assert!(folder.dir().is_ok());
        assert!(
            folder
                .read("/etc/hostname")
                .unwrap_err()
                .contains("outside the image folder")
        );
    }

    /// A FIFO would block `open` until a writer came: it is refused
    /// before it is opened.
    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("f.png");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = ImageFolder::new(tmp.path()).read("f.png").unwrap_err();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
