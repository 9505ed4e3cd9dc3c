//! The wasmtime engine, built once per host: pooling allocator, epoch
//! interruption driven by a ticker thread, and one linker holding everything
//! a tool may import.

use super::bindings;
use super::state::CallState;
use crate::manifest::MAX_MEMORY_MIB;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

/// One epoch tick. A running guest yields to the executor once per tick and
/// is charged one tick of its CPU budget.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Bytes of each pooled linear memory kept resident between calls (a tool's
/// stack, data and small heap fit).
const KEEP_RESIDENT: usize = 2 << 20;

pub struct EngineParts {
    pub engine: Engine,
    pub linker: Linker<CallState>,
}

/// Builds the engine and linker and starts the epoch ticker (which stops
/// when the engine is dropped).
pub fn build(max_instances: u32) -> anyhow::Result<EngineParts> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances * 8)
        .total_memories(max_instances * 2)
        .total_tables(max_instances * 4)
        .total_stacks(max_instances)
        .max_memory_size((MAX_MEMORY_MIB as usize) << 20)
        // A slot is reused for the next call: reset the pages the last one
        // touched with memset (found with PAGEMAP_SCAN where the kernel has
        // it) instead of madvise, so the next call does not fault them back
        // in. Measured by `bench tools`: about 25 us less per call.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("wasmtime engine: {e}"))?;
    start_ticker(&engine)?;
    let linker = linker(&engine).map_err(|e| anyhow::anyhow!("linking host imports: {e}"))?;
    Ok(EngineParts { engine, linker })
}

fn start_ticker(engine: &Engine) -> anyhow::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(())
}

/// WASI p2 (with sockets linked but switched off in every context, as Rust's
/// std may import them), wasi:http, and `mmsr:search/config`.
fn linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    bindings::config::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)?;
    Ok(linker)
}
