//! What one call's `Store` holds: a WASI context with nothing granted, the
//! wasi-http context with the tool's policy hooks, limits, and the tool's config.

use super::bindings::config;
use crate::manifest::{DirGrant, Limits};
use crate::net::{NetClient, PolicyLog, ToolHttpHooks, ToolNetPolicy};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The tail of the guest's stderr kept for trap messages (a panic message).
const STDERR_BYTES: usize = 4096;

pub struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: ToolHttpHooks,
    pub limits: CallLimits,
    config: Arc<BTreeMap<String, String>>,
    pub stderr: MemoryOutputPipe,
    /// Epoch ticks of CPU left before the call is interrupted.
    pub cpu_ticks_left: u64,
}

/// Everything a call needs from its tool, shared across calls.
pub struct CallSetup {
    pub policy: Arc<ToolNetPolicy>,
    pub net: Arc<NetClient>,
    pub config: Arc<BTreeMap<String, String>>,
    pub limits: Limits,
    pub dirs: Vec<DirGrant>,
    pub cpu_ticks: u64,
}

impl CallState {
    pub fn new(setup: &CallSetup, log: Arc<PolicyLog>) -> anyhow::Result<Self> {
        let stderr = MemoryOutputPipe::new(STDERR_BYTES);
        let mut wasi = WasiCtxBuilder::new();
        // No env, args, stdin or preopens (the builder's defaults), no sockets:
        // the only way out is wasi:http through the hooks.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stderr(stderr.clone());
        for d in &setup.dirs {
            // wasmtime-wasi opens it with cap-std: the guest cannot leave it.
            wasi.preopened_dir(&d.host, &d.guest, FsPerms::ReadOnly)
                .map_err(|e| anyhow::anyhow!("read_only_dirs {}: {e}", d.host.display()))?;
        }
        Ok(CallState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: ToolHttpHooks {
                policy: setup.policy.clone(),
                net: setup.net.clone(),
                log,
            },
            limits: CallLimits::new(setup.limits.memory_bytes()),
            config: setup.config.clone(),
            stderr,
            cpu_ticks_left: setup.cpu_ticks,
        })
    }

    /// The guest's panic message (from "panicked at" on), else the last line
    /// it wrote to stderr, if any.
    pub fn stderr_tail(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        // Rust prints "panicked at FILE:LINE:COL:", the message, then a backtrace hint.
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        let start = lines
            .iter()
            .rposition(|l| l.contains("panicked at"))
            .unwrap_or(lines.len().saturating_sub(1));
        let tail = lines.get(start..)?.join(" ");
        (!tail.is_empty()).then(|| tail.chars().take(300).collect())
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl config::Host for CallState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

/// `StoreLimits` plus a note of whether the memory cap refused a grow, so a
/// trap can be reported as "memory limit" rather than a bare `unreachable`.
pub struct CallLimits {
    inner: StoreLimits,
    pub memory_refused: Option<usize>,
}

impl CallLimits {
    fn new(memory_cap: usize) -> Self {
        CallLimits {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_cap)
                .instances(64)
                .tables(64)
                .memories(8)
                .build(),
            memory_refused: None,
        }
    }
}

impl ResourceLimiter for CallLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if !ok {
            self.memory_refused = Some(desired);
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}
