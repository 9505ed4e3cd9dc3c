//! `mmsr-host bench tools`: the cost of the sandbox. Against one fake
//! upstream on loopback (no simulated latency), side by side in one run:
//! - a wasm tool call (the `well-behaved` test guest: fresh store and
//!   instance, one GET through the host's policy hook and pooled client,
//!   results parsed in the guest) against a native `reqwest` call making the
//!   same GET on an equally pooled client and parsing the same lines;
//! - latency p50/p99 at concurrency 1 and 64, and calls per second at 64;
//! - instantiation alone (fresh `Store` + instance from the cached `InstancePre`);
//! - for scale, the same c1 comparison against an upstream that takes 1 ms
//!   (a fast local service; real search APIs take hundreds of ms).
//!
//! Calls alternate between the two in blocks, so drift on a shared machine
//! hits both alike. Any failed call aborts the run: an error is not a latency.

use crate::fakes::FakeUpstream;
use crate::manifest::ToolManifest;
use crate::pipeline::point_at_engine;
use crate::runtime::{HostOptions, ToolHost};
use crate::tools::{ToolInvoker, ToolKind, WebResult};
use anyhow::Context;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOOL: &str = "bench";
const TOOL_SLOW: &str = "bench-1ms";
const SLOW_UPSTREAM: Duration = Duration::from_millis(1);
const CALLS_SLOW: usize = 400;
const TOP_K: u32 = 5;
const WARMUP: usize = 300;
/// Calls per kind at concurrency 1, in blocks of `BLOCK` alternating kinds.
const CALLS_C1: usize = 3000;
const BLOCK: usize = 250;
const CONCURRENCY: usize = 64;
/// Calls per task at concurrency 64, per round; rounds alternate kinds.
const CALLS_PER_TASK: usize = 25;
const ROUNDS_C64: usize = 4;
const INSTANTIATIONS: usize = 5000;

pub const TARGET_OVERHEAD_P50: f64 = 1.3;
pub const TARGET_INSTANTIATE_US: f64 = 50.0;
pub const TARGET_CALLS_PER_S_C64: f64 = 3000.0;

#[derive(Debug, Serialize)]
pub struct ToolsReport {
    pub wasm_p50_us: f64,
    pub wasm_p99_us: f64,
    pub native_p50_us: f64,
    pub native_p99_us: f64,
    pub overhead_ratio_p50: f64,
    pub overhead_ratio_p99: f64,
    /// `wasm_p50_us - native_p50_us`: the sandbox's fixed cost per call.
    pub sandbox_cost_p50_us: f64,
    pub wasm_p50_us_c64: f64,
    pub wasm_p99_us_c64: f64,
    pub native_p50_us_c64: f64,
    pub native_p99_us_c64: f64,
    pub overhead_ratio_p50_c64: f64,
    /// Wasm tool calls per second with 64 in flight.
    pub calls_per_s_c64: f64,
    pub native_calls_per_s_c64: f64,
    /// Wasm calls per second at c64 over native ones.
    pub throughput_ratio_c64: f64,
    /// Median of fresh `Store` + instantiate, nothing called.
    pub instantiate_us: f64,
    pub instantiate_p99_us: f64,
    /// c1 against an upstream answering after 1 ms.
    pub wasm_p50_us_1ms: f64,
    pub native_p50_us_1ms: f64,
    pub overhead_ratio_p50_1ms: f64,
    pub calls_c1: usize,
    pub calls_c64: usize,
    pub cores: usize,
    pub targets_met: TargetsMet,
}

#[derive(Debug, Serialize)]
pub struct TargetsMet {
    pub overhead_ratio_p50: bool,
    pub instantiate_us: bool,
    pub calls_per_s_c64: bool,
}

/// Where the bench finds the test guest: `$MMSR_BENCH_WASM`, else
/// `tools-wasm/dist/well_behaved.wasm` under the current directory.
fn guest_path() -> PathBuf {
    std::env::var_os("MMSR_BENCH_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("tools-wasm/dist/well_behaved.wasm").to_path_buf())
}

/// The same request and parsing as the guest, natively.
struct Native {
    client: reqwest::Client,
    base: String,
}

impl Native {
    async fn search(&self, query: &str) -> anyhow::Result<Vec<WebResult>> {
        let resp = self
            .client
            .get(format!("{}/search", self.base))
            .query(&[("q", query), ("k", &TOP_K.to_string())])
            .header("accept", "text/plain")
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
        let text = resp.text().await?;
        text.lines()
            .filter(|l| !l.is_empty())
            .take(TOP_K as usize)
            .map(|line| {
                let mut parts = line.splitn(3, '\t');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(title), Some(url), Some(snippet)) => Ok(WebResult {
                        title: title.into(),
                        url: url.into(),
                        snippet: snippet.into(),
                    }),
                    _ => anyhow::bail!("bad line {line:?}"),
                }
            })
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Wasm,
    Native,
}

struct Subjects {
    host: Arc<ToolHost>,
    tool: &'static str,
    native: Native,
}

impl Subjects {
    async fn call(&self, kind: Kind, i: usize) -> anyhow::Result<Duration> {
        let query = format!("bench query {i}");
        let started = Instant::now();
        let results = match kind {
            Kind::Wasm => self.host.text_search(self.tool, &query, TOP_K).await?,
            Kind::Native => self.native.search(&query).await?,
        };
        let took = started.elapsed();
        anyhow::ensure!(
            results.len() == TOP_K as usize && results[0].title == format!("Result 1 for {query}"),
            "{kind:?} call gave wrong results: {results:?}"
        );
        Ok(took)
    }
}

fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e6
}

struct Stats {
    p50_us: f64,
    p99_us: f64,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    Stats {
        p50_us: percentile_us(&v, 0.50),
        p99_us: percentile_us(&v, 0.99),
    }
}

async fn concurrency_1(s: &Subjects, calls: usize) -> anyhow::Result<(Stats, Stats)> {
    let (mut wasm, mut native) = (Vec::new(), Vec::new());
    let mut i = 0;
    let block = BLOCK.min(calls);
    while wasm.len() < calls {
        for _ in 0..block {
            wasm.push(s.call(Kind::Wasm, i).await?);
            i += 1;
        }
        for _ in 0..block {
            native.push(s.call(Kind::Native, i).await?);
            i += 1;
        }
    }
    Ok((stats(wasm), stats(native)))
}

/// One round: 64 tasks, each making `CALLS_PER_TASK` calls back to back.
async fn round_c64(s: &Arc<Subjects>, kind: Kind) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(CALLS_PER_TASK);
                for c in 0..CALLS_PER_TASK {
                    took.push(s.call(kind, t * CALLS_PER_TASK + c).await?);
                }
                Ok::<_, anyhow::Error>(took)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(CONCURRENCY * CALLS_PER_TASK);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, started.elapsed()))
}

async fn concurrency_64(s: &Arc<Subjects>) -> anyhow::Result<[(Stats, f64); 2]> {
    let mut lat = [Vec::new(), Vec::new()];
    let mut time = [Duration::ZERO; 2];
    for _ in 0..ROUNDS_C64 {
        for (k, kind) in [Kind::Wasm, Kind::Native].into_iter().enumerate() {
            let (l, t) = round_c64(s, kind).await?;
            lat[k].extend(l);
            time[k] += t;
        }
    }
    let calls = (ROUNDS_C64 * CONCURRENCY * CALLS_PER_TASK) as f64;
    let [wasm, native] = lat;
    Ok([
        (stats(wasm), calls / time[0].as_secs_f64()),
        (stats(native), calls / time[1].as_secs_f64()),
    ])
}

async fn instantiation(host: &ToolHost) -> anyhow::Result<Stats> {
    for _ in 0..WARMUP {
        host.instantiate_only(TOOL).await?;
    }
    let mut took = Vec::with_capacity(INSTANTIATIONS);
    for _ in 0..INSTANTIATIONS {
        let started = Instant::now();
        host.instantiate_only(TOOL).await?;
        took.push(started.elapsed());
    }
    Ok(stats(took))
}

/// Measured from a worker task, where real callers (the pipeline, the
/// rollout engine) make their calls, rather than from `block_on`'s thread.
pub async fn run() -> anyhow::Result<ToolsReport> {
    tokio::spawn(measure()).await?
}

async fn measure() -> anyhow::Result<ToolsReport> {
    let wasm = guest_path();
    anyhow::ensure!(
        wasm.exists(),
        "{} is missing: run `make tools` (or set MMSR_BENCH_WASM)",
        wasm.display()
    );
    let fake = FakeUpstream::start().await?;
    let slow = FakeUpstream::with_latency(SLOW_UPSTREAM).await?;
    let host = Arc::new(ToolHost::new(HostOptions::default())?);
    for (name, upstream) in [(TOOL, &fake), (TOOL_SLOW, &slow)] {
        let mut tool = ToolManifest::new(name, ToolKind::TextSearch, &wasm);
        point_at_engine(&mut tool, upstream.addr);
        tool.limits.concurrency = CONCURRENCY as u32;
        host.load_tool(&tool)
            .await
            .context("loading the bench guest")?;
    }
    // Pooled like the host's own client.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()?;
    let subjects = |tool, upstream: &FakeUpstream| Subjects {
        host: host.clone(),
        tool,
        native: Native {
            client: client.clone(),
            base: upstream.base_url(),
        },
    };
    let s = Arc::new(subjects(TOOL, &fake));
    for i in 0..WARMUP {
        s.call(Kind::Wasm, i).await?;
        s.call(Kind::Native, i).await?;
    }
    let (wasm_c1, native_c1) = concurrency_1(&s, CALLS_C1).await?;
    let [
        (wasm_c64, calls_per_s_c64),
        (native_c64, native_calls_per_s_c64),
    ] = concurrency_64(&s).await?;
    let inst = instantiation(&s.host).await?;
    let (wasm_slow, native_slow) = concurrency_1(&subjects(TOOL_SLOW, &slow), CALLS_SLOW).await?;
    let overhead_ratio_p50 = wasm_c1.p50_us / native_c1.p50_us;
    Ok(ToolsReport {
        wasm_p50_us: wasm_c1.p50_us,
        wasm_p99_us: wasm_c1.p99_us,
        native_p50_us: native_c1.p50_us,
        native_p99_us: native_c1.p99_us,
        overhead_ratio_p50,
        overhead_ratio_p99: wasm_c1.p99_us / native_c1.p99_us,
        sandbox_cost_p50_us: wasm_c1.p50_us - native_c1.p50_us,
        wasm_p50_us_c64: wasm_c64.p50_us,
        wasm_p99_us_c64: wasm_c64.p99_us,
        native_p50_us_c64: native_c64.p50_us,
        native_p99_us_c64: native_c64.p99_us,
        overhead_ratio_p50_c64: wasm_c64.p50_us / native_c64.p50_us,
        calls_per_s_c64,
        native_calls_per_s_c64,
        throughput_ratio_c64: calls_per_s_c64 / native_calls_per_s_c64,
        instantiate_us: inst.p50_us,
        instantiate_p99_us: inst.p99_us,
        wasm_p50_us_1ms: wasm_slow.p50_us,
        native_p50_us_1ms: native_slow.p50_us,
        overhead_ratio_p50_1ms: wasm_slow.p50_us / native_slow.p50_us,
        calls_c1: CALLS_C1,
        calls_c64: ROUNDS_C64 * CONCURRENCY * CALLS_PER_TASK,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        targets_met: TargetsMet {
            overhead_ratio_p50: overhead_ratio_p50 <= TARGET_OVERHEAD_P50,
            instantiate_us: inst.p50_us <= TARGET_INSTANTIATE_US,
            calls_per_s_c64: calls_per_s_c64 >= TARGET_CALLS_PER_S_C64,
        },
    })
}

fn mark(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

pub fn print_table(r: &ToolsReport) {
    println!(
        "wasm tool call vs native reqwest, fake upstream on loopback, {} cores",
        r.cores
    );
    println!(
        "                      {:>10} {:>10} {:>8}",
        "wasm", "native", "ratio"
    );
    let row = |what: &str, w: f64, n: f64| {
        println!("  {what:<20}{w:>10.1} {n:>10.1} {:>7.2}x", w / n);
    };
    row("p50 us, c1", r.wasm_p50_us, r.native_p50_us);
    row("p99 us, c1", r.wasm_p99_us, r.native_p99_us);
    row("p50 us, c64", r.wasm_p50_us_c64, r.native_p50_us_c64);
    row("p99 us, c64", r.wasm_p99_us_c64, r.native_p99_us_c64);
    row("calls/s, c64", r.calls_per_s_c64, r.native_calls_per_s_c64);
    // tokio's 1 ms timer granularity makes the 1 ms sleep about 2 ms.
    row(
        "p50 us, c1, slow up",
        r.wasm_p50_us_1ms,
        r.native_p50_us_1ms,
    );
    println!(
        "  instantiate         {:>10.1} us p50, {:.1} us p99",
        r.instantiate_us, r.instantiate_p99_us
    );
    println!(
        "  sandbox cost        {:>10.1} us per call (p50, c1)",
        r.sandbox_cost_p50_us
    );
    println!("  (slow up: the upstream sleeps 1 ms before answering)");
    println!("targets");
    println!(
        "  overhead p50 <= {TARGET_OVERHEAD_P50}x      {:>6.2}x  {}",
        r.overhead_ratio_p50,
        mark(r.targets_met.overhead_ratio_p50)
    );
    println!(
        "  instantiate <= {TARGET_INSTANTIATE_US} us     {:>6.1}   {}",
        r.instantiate_us,
        mark(r.targets_met.instantiate_us)
    );
    println!(
        "  calls/s c64 >= {TARGET_CALLS_PER_S_C64}   {:>6.0}   {}",
        r.calls_per_s_c64,
        mark(r.targets_met.calls_per_s_c64)
    );
}
