//! The wasm tool host: loads the components a [`Manifest`] names, checks
//! each against its kind's world, and serves calls through [`ToolInvoker`].
//!
//! ```ignore
//! let manifest = Manifest::load(Path::new("configs/tools.toml"))?;
//! let host = Arc::new(ToolHost::new(HostOptions::default())?);
//! host.load_manifest(&manifest).await?;          // refuses bad tools, naming them
//! let hits = host.text_search("serpapi-search", "kittens", 5).await?; // ToolInvoker
//! ```
//!
//! - One [`wasmtime::Engine`] per host (pooling allocator, epoch ticker); a
//!   compiled-artefact cache on disk, keyed by the `.wasm`'s sha256, so a
//!   component is compiled once.
//! - Per tool: an `InstancePre` (linking done once), its net policy, a
//!   concurrency semaphore (`limits.concurrency`).
//! - Per call: a fresh `Store` with `StoreLimits` (memory), a CPU budget in
//!   epoch ticks (yielding to tokio every tick), a wall-clock timeout, and a
//!   WASI context with no preopens, env, args, stdio or sockets.
//! - Errors: the guest's `search-error` maps onto [`ToolError`]; traps,
//!   memory and CPU limits are [`ToolError::Trap`], wall time is
//!   [`ToolError::Timeout`], a refused request is [`ToolError::Denied`].
//! - Loading a tool again under the same name replaces it (swap without restart).

pub mod bindings;
mod cache;
mod convert;
mod engine;
mod invoker;
mod state;
pub mod validate;

pub use cache::default_dir as default_cache_dir;
pub use engine::EPOCH_TICK;

use crate::manifest::{Manifest, ToolManifest};
use crate::net::{NetClient, PolicyLog, StaticHosts, ToolNetPolicy};
use crate::tools::{ToolKind, ToolMetadata};
use anyhow::Context;
use bindings::{image_search, page_reader, summarizer, text_search};
use cache::ArtifactCache;
use state::{CallSetup, CallState};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

/// Where secrets come from (the process environment unless a test says otherwise).
pub type SecretSource = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct HostOptions {
    /// Compiled-artefact cache; `None` compiles in memory on every start.
    pub cache_dir: Option<PathBuf>,
    /// Component instances alive at once, across all tools (pool size).
    pub max_instances: u32,
    pub secrets: SecretSource,
    /// Names answered without DNS, like `/etc/hosts` (tests map names to
    /// private addresses); the answers pass the same address checks.
    pub hosts: StaticHosts,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            cache_dir: cache::default_dir(),
            max_instances: 256,
            secrets: Arc::new(|k| std::env::var(k).ok()),
            hosts: StaticHosts::new(),
        }
    }
}

pub struct ToolHost {
    engine: Engine,
    linker: Linker<CallState>,
    cache: ArtifactCache,
    net: Arc<NetClient>,
    secrets: SecretSource,
    tools: RwLock<BTreeMap<String, Arc<LoadedTool>>>,
}

/// A loaded tool, as `tools list` shows it.
#[derive(Clone, Debug)]
pub struct ToolInfo {
    pub name: String,
    pub kind: ToolKind,
    pub wasm: PathBuf,
    pub metadata: ToolMetadata,
    pub imports: Vec<String>,
}

struct LoadedTool {
    manifest: ToolManifest,
    pre: KindPre,
    info: ToolInfo,
    setup: CallSetup,
    permits: tokio::sync::Semaphore,
}

enum KindPre {
    TextSearch(text_search::TextSearchToolPre<CallState>),
    ImageSearch(image_search::ImageSearchToolPre<CallState>),
    PageReader(page_reader::PageReaderToolPre<CallState>),
    Summarizer(summarizer::SummarizerToolPre<CallState>),
}

/// What `tools inspect` reports about a `.wasm`, accepted or not.
#[derive(Clone, Debug)]
pub struct Inspection {
    pub path: PathBuf,
    pub world: Option<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub metadata: Option<ToolMetadata>,
    /// `Err` says why the host refuses it.
    pub verdict: Result<(), String>,
}

impl ToolHost {
    pub fn new(options: HostOptions) -> anyhow::Result<Self> {
        let parts = engine::build(options.max_instances)?;
        Ok(ToolHost {
            engine: parts.engine,
            linker: parts.linker,
            cache: ArtifactCache::new(options.cache_dir),
            net: Arc::new(NetClient::new(options.hosts)?),
            secrets: options.secrets,
            tools: RwLock::new(BTreeMap::new()),
        })
    }

    /// A host with every tool of `manifest` loaded.
    pub async fn from_manifest(manifest: &Manifest, options: HostOptions) -> anyhow::Result<Self> {
        let host = Self::new(options)?;
        host.load_manifest(manifest).await?;
        Ok(host)
    }

    /// Loads (or replaces) every tool of `manifest`; the first refusal names
    /// the tool and stops, leaving tools loaded before it in place.
    pub async fn load_manifest(&self, manifest: &Manifest) -> anyhow::Result<()> {
        manifest.validate()?;
        for tool in manifest.tools.values() {
            self.load_tool(tool).await?;
        }
        Ok(())
    }

    /// Loads one tool, replacing any of the same name: reads and compiles (or
    /// fetches from the cache) its `.wasm`, checks its world and imports,
    /// links it once, and asks its metadata.
    pub async fn load_tool(&self, tool: &ToolManifest) -> anyhow::Result<ToolInfo> {
        tool.validate()?;
        let name = &tool.name;
        let wasm = &tool.wasm;
        let bytes = read_wasm(wasm).with_context(|| {
            format!(
                "tool `{name}`: field `wasm`: cannot read {} (are the tools built? `make tools`)",
                wasm.display()
            )
        })?;
        let component = self
            .cache
            .component(&self.engine, &bytes)
            .with_context(|| {
                format!(
                    "tool `{name}`: {} is not a usable component",
                    wasm.display()
                )
            })?;
        let shape = validate::shape(&self.engine, &component);
        shape
            .check(tool.kind, !tool.read_only_dirs.is_empty())
            .map_err(|e| anyhow::anyhow!("tool `{name}`: {} {e}", wasm.display()))?;
        let pre = self
            .link(&component, tool.kind)
            .map_err(|e| anyhow::anyhow!("tool `{name}`: {}: {e}", wasm.display()))?;
        let policy = ToolNetPolicy::from_manifest(tool, |k| (self.secrets)(k))
            .map_err(|e| anyhow::anyhow!("tool `{name}`: field `secrets`: {e}"))?;
        for dir in &tool.read_only_dirs {
            cap_std::fs::Dir::open_ambient_dir(&dir.host, cap_std::ambient_authority())
                .with_context(|| {
                    format!(
                        "tool `{name}`: field `read_only_dirs`: cannot open {}",
                        dir.host.display()
                    )
                })?;
        }
        let limits = tool.limits.clone();
        let setup = CallSetup {
            policy: Arc::new(policy),
            net: self.net.clone(),
            config: Arc::new(tool.config.clone()),
            cpu_ticks: cpu_ticks(&limits),
            dirs: tool.read_only_dirs.clone(),
            limits,
        };
        let metadata = self
            .describe(&pre, &setup)
            .await
            .with_context(|| format!("tool `{name}`: asking its metadata"))?;
        if metadata.kind != tool.kind {
            anyhow::bail!(
                "tool `{name}`: its metadata says kind {}, the manifest says {}",
                metadata.kind,
                tool.kind
            );
        }
        for needed in &metadata.outbound_hosts {
            let allowed = crate::manifest::AllowedHost::parse(needed)
                .is_ok_and(|h| tool.allowed_outbound_hosts.contains(&h));
            // A tool re-pointed at a local engine (loopback allowed) reaches
            // its upstream's stand-in instead: nothing to warn about.
            if !allowed && tool.allowed_private_addresses.is_empty() {
                tracing::warn!(tool = %name, host = %needed, "the tool says it needs a host its manifest does not allow");
            } else if !allowed {
                tracing::debug!(tool = %name, host = %needed, "tool re-pointed away from a host it names");
            }
        }
        let info = ToolInfo {
            name: name.clone(),
            kind: tool.kind,
            wasm: wasm.clone(),
            metadata,
            imports: shape.imports,
        };
        let loaded = Arc::new(LoadedTool {
            manifest: tool.clone(),
            pre,
            info: info.clone(),
            setup,
            permits: tokio::sync::Semaphore::new(tool.limits.concurrency as usize),
        });
        self.tools
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), loaded);
        tracing::debug!(tool = %name, kind = %tool.kind, "tool loaded");
        Ok(info)
    }

    /// Removes a tool; calls in flight finish on the old instance.
    pub fn unload(&self, name: &str) -> bool {
        self.tools
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .is_some()
    }

    pub fn tools(&self) -> Vec<ToolInfo> {
        let tools = self.tools.read().unwrap_or_else(|e| e.into_inner());
        tools.values().map(|t| t.info.clone()).collect()
    }

    pub fn info(&self, name: &str) -> Option<ToolInfo> {
        self.get(name).map(|t| t.info.clone())
    }

    /// The manifest table a loaded tool runs under (its limits, for layers
    /// such as the rate limiter).
    pub fn manifest(&self, name: &str) -> Option<ToolManifest> {
        self.get(name).map(|t| t.manifest.clone())
    }

    fn get(&self, name: &str) -> Option<Arc<LoadedTool>> {
        let tools = self.tools.read().unwrap_or_else(|e| e.into_inner());
        tools.get(name).cloned()
    }

    /// Checks any `.wasm` as a tool without loading it: its world, imports,
    /// metadata, and whether this host would accept it.
    pub async fn inspect(&self, path: &Path) -> Inspection {
        let mut out = Inspection {
            path: path.to_path_buf(),
            world: None,
            imports: vec![],
            exports: vec![],
            metadata: None,
            verdict: Ok(()),
        };
        let bytes = match read_wasm(path) {
            Ok(b) => b,
            Err(e) => {
                out.verdict = Err(format!("cannot read: {e}"));
                return out;
            }
        };
        let component = match self.cache.component(&self.engine, &bytes) {
            Ok(c) => c,
            Err(e) => {
                out.verdict = Err(format!("not a usable component: {e:#}"));
                return out;
            }
        };
        let shape = validate::shape(&self.engine, &component);
        out.imports = shape.imports.clone();
        out.exports = shape.exports.clone();
        let Some(kind) = shape.exported_kind() else {
            out.verdict = Err(format!(
                "exports no tool interface (mmsr:search/text-search, image-search, page-reader or \
                 summarizer @{}); exports: {}",
                validate::WIT_VERSION,
                shape.exports.join(", ")
            ));
            return out;
        };
        out.world = Some(format!("mmsr:search/{kind}-tool@{}", validate::WIT_VERSION));
        // No manifest here: judged as a tool granted no files.
        if let Err(e) = shape.check(kind, false) {
            out.verdict = Err(e);
            return out;
        }
        let pre = match self.link(&component, kind) {
            Ok(p) => p,
            Err(e) => {
                out.verdict = Err(e);
                return out;
            }
        };
        let probe = ToolManifest::new("inspect", kind, path);
        let setup = CallSetup {
            policy: Arc::new(
                ToolNetPolicy::from_manifest(&probe, |_| None).expect("no secrets to read"),
            ),
            net: self.net.clone(),
            config: Arc::new(BTreeMap::new()),
            cpu_ticks: cpu_ticks(&probe.limits),
            dirs: vec![],
            limits: probe.limits.clone(),
        };
        match self.describe(&pre, &setup).await {
            Ok(m) if m.kind != kind => {
                out.verdict = Err(format!(
                    "its metadata says kind {} but it exports the {kind} interface",
                    m.kind
                ));
                out.metadata = Some(m);
            }
            Ok(m) => out.metadata = Some(m),
            Err(e) => out.verdict = Err(format!("metadata.describe failed: {e:#}")),
        }
        out
    }

    fn link(&self, component: &Component, kind: ToolKind) -> Result<KindPre, String> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| format!("imports do not link: {e:#}"))?;
        let typed = match kind {
            ToolKind::TextSearch => {
                text_search::TextSearchToolPre::new(pre).map(KindPre::TextSearch)
            }
            ToolKind::ImageSearch => {
                image_search::ImageSearchToolPre::new(pre).map(KindPre::ImageSearch)
            }
            ToolKind::PageReader => {
                page_reader::PageReaderToolPre::new(pre).map(KindPre::PageReader)
            }
            ToolKind::Summarizer => {
                summarizer::SummarizerToolPre::new(pre).map(KindPre::Summarizer)
            }
        };
        typed.map_err(|e| format!("exports do not match world {kind}-tool: {e:#}"))
    }

    /// A fresh store for one call, with its limits armed.
    fn store(&self, setup: &CallSetup, log: Arc<PolicyLog>) -> anyhow::Result<Store<CallState>> {
        let mut store = Store::new(&self.engine, CallState::new(setup, log)?);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.cpu_ticks_left == 0 {
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            state.cpu_ticks_left -= 1;
            // Yield each tick so a busy guest never holds a tokio worker.
            Ok(wasmtime::UpdateDeadline::Yield(1))
        });
        Ok(store)
    }

    async fn describe(&self, pre: &KindPre, setup: &CallSetup) -> anyhow::Result<ToolMetadata> {
        let mut store = self.store(setup, Arc::new(PolicyLog::default()))?;
        let timeout = setup.limits.timeout();
        let call = async {
            let m = match pre {
                KindPre::TextSearch(p) => {
                    let i = p.instantiate_async(&mut store).await?;
                    i.mmsr_search_metadata().call_describe(&mut store).await?
                }
                KindPre::ImageSearch(p) => {
                    let i = p.instantiate_async(&mut store).await?;
                    i.mmsr_search_metadata().call_describe(&mut store).await?
                }
                KindPre::PageReader(p) => {
                    let i = p.instantiate_async(&mut store).await?;
                    i.mmsr_search_metadata().call_describe(&mut store).await?
                }
                KindPre::Summarizer(p) => {
                    let i = p.instantiate_async(&mut store).await?;
                    i.mmsr_search_metadata().call_describe(&mut store).await?
                }
            };
            Ok::<_, wasmtime::Error>(m)
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(m)) => Ok(convert::metadata(m)),
            Ok(Err(e)) => Err(anyhow::anyhow!("{e:#}")),
            Err(_) => anyhow::bail!("no answer within {} ms", timeout.as_millis()),
        }
    }
}

/// The CPU budget in epoch ticks.
fn cpu_ticks(limits: &crate::manifest::Limits) -> u64 {
    (limits.cpu_budget().as_millis() as u64 / EPOCH_TICK.as_millis() as u64).max(1)
}

/// Wall-clock allowance on top of the CPU budget, so a busy loop is reported
/// as the CPU limit it hit rather than as a time-out.
fn wall_timeout(limit: Duration) -> Duration {
    limit + (limit / 4).max(Duration::from_millis(100))
}

/// Reads a component file. Only a regular file: opening a FIFO would block
/// until something wrote to it, and a device might never end.
fn read_wasm(path: &Path) -> std::io::Result<Vec<u8>> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    std::fs::read(path)
}
