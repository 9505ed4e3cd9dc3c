//! Whole directory trees as data, for tests that compare what two runs wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file under `root` (recursively), by its path relative to `root`,
/// with its bytes. Panics on an unreadable entry: a test helper.
pub fn files_under(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}
