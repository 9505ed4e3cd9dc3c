//! Compiled components on disk, so a `.wasm` is compiled by Cranelift once
//! (about 0.4 s) and later loads only deserialize it (about 1 ms).
//!
//! Files are named by the sha256 of the `.wasm` and the engine's
//! compatibility hash. A compiled artefact is native code: the cache
//! directory must be as trusted as the binary (it is created private).

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct ArtifactCache {
    dir: Option<PathBuf>,
    /// Components already loaded in this process, by `.wasm` digest.
    loaded: Mutex<HashMap<[u8; 32], Component>>,
}

/// Where compiled artefacts go unless the host is told otherwise:
/// `$MMSR_WASM_CACHE`, else `$XDG_CACHE_HOME/mmsr/wasm`, else `~/.cache/mmsr/wasm`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("MMSR_WASM_CACHE") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("mmsr").join("wasm"))
}

impl ArtifactCache {
    /// `None` keeps compiled components in memory only.
    pub fn new(dir: Option<PathBuf>) -> Self {
        ArtifactCache {
            dir,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The component for these bytes: from memory, from disk, or compiled now.
    pub fn component(&self, engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        if let Some(c) = self.lock().get(&digest) {
            return Ok(c.clone());
        }
        // Bytes that never compiled are in neither cache.
        check_header(wasm)?;
        let component = match &self.dir {
            Some(dir) => self.load_or_compile(engine, wasm, dir, &digest)?,
            None => compile(engine, wasm)?,
        };
        self.lock().insert(digest, component.clone());
        Ok(component)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Component>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        dir: &Path,
        digest: &[u8; 32],
    ) -> anyhow::Result<Component> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let path = dir.join(format!("{}-{:016x}.cwasm", hex::encode(digest), h.finish()));
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an engine
            // with this compatibility hash, into a directory only we write.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "recompiling unusable cached artefact: {e}")
                }
            }
        }
        let bytes = engine
            .precompile_component(wasm)
            .map_err(|e| anyhow::anyhow!("compiling component: {e:#}"))?;
        if let Err(e) = store(dir, &path, &bytes) {
            tracing::warn!(dir = %dir.display(), "cannot cache compiled component: {e}");
        }
        // SAFETY: `bytes` was just produced by this engine.
        unsafe { Component::deserialize(engine, &bytes) }
            .map_err(|e| anyhow::anyhow!("loading compiled component: {e}"))
    }
}

/// Names the two common wrong files before the parser's byte dumps do.
fn check_header(wasm: &[u8]) -> anyhow::Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];
    if !wasm.starts_with(MAGIC) {
        anyhow::bail!("not a WebAssembly file (it does not start with `\\0asm`)");
    }
    if wasm.get(4..8) == Some(&CORE_MODULE[..]) {
        anyhow::bail!(
            "a core wasm module, not a component: build the tool for wasm32-wasip2 \
             (or wrap the module with `wasm-tools component new`)"
        );
    }
    Ok(())
}

fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, wasm).map_err(|e| anyhow::anyhow!("compiling component: {e:#}"))
}

/// Writes atomically (temp file + rename) so a concurrent reader never sees half a file.
fn store(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let mut tmp = tempfile_in(dir)?;
    std::io::Write::write_all(&mut tmp.1, bytes)?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let name = format!(".tmp-{}-{:x}", std::process::id(), rand::random::<u64>());
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}
