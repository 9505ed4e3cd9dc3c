//! Swapping a tool without recompiling: two components of the same world
//! (the extractive and the LLM summarizer) behind one manifest name. The same
//! `mmsr-host` binary serves whichever the manifest points at, and a running
//! host re-loads a tool in place while calls go on. Needs `make tools`.

use mmsr_host::fakes::FakeUpstream;
use mmsr_host::manifest::{Manifest, ToolManifest};
use mmsr_host::pipeline::point_at_engine;
use mmsr_host::runtime::{HostOptions, ToolHost};
use mmsr_host::tools::{PageText, ToolInvoker, ToolKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const PAGE: &str = "The tower was finished in 1889 for the fair. It is made of iron. \
                    Bread is baked from flour and water.";
const QUERY: &str = "when was the tower finished";

fn dist(file: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tools-wasm/dist")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: run `make tools`",
        path.display()
    );
    path
}

/// The manifest table `summarize`, served by `wasm`; the LLM one talks to `llm`.
fn summarize_table(wasm: &str, llm: &FakeUpstream) -> String {
    let mut table = format!(
        "[tools.summarize]\nwasm = {:?}\nkind = \"summarizer\"\n",
        dist(wasm)
    );
    if wasm.starts_with("llm") {
        table.push_str(&format!(
            "allowed_outbound_hosts = [\"{0}\"]\nallowed_private_addresses = [\"127.0.0.1\"]\n\
             config = {{ base-url = \"{0}\", model = \"fake-model\" }}\n",
            llm.base_url()
        ));
    }
    table
}

/// `mmsr-host tools call summarize` in a child process; the summary it prints.
fn cli_summarize(manifest: &Path, page: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mmsr-host"))
        .args([
            "tools",
            "call",
            "summarize",
            "--query",
            QUERY,
            "--max-chars",
            "60",
            "--json",
        ])
        .arg("--manifest")
        .arg(manifest)
        .arg("--page")
        .arg(page)
        .env("MMSR_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    v["ok"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_binary_serves_whichever_component_the_manifest_names() {
    let llm = FakeUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("tools.toml");
    let page = dir.path().join("page.txt");
    std::fs::write(&page, PAGE).unwrap();

    std::fs::write(
        &manifest,
        summarize_table("extractive_summarizer.wasm", &llm),
    )
    .unwrap();
    let child_manifest = manifest.clone();
    let child_page = page.clone();
    let extractive =
        tokio::task::spawn_blocking(move || cli_summarize(&child_manifest, &child_page))
            .await
            .unwrap();
    assert!(
        extractive.contains("finished in 1889") && !extractive.contains("Bread"),
        "the extractive summarizer picks the relevant sentence: {extractive}"
    );
    assert_eq!(llm.requests(), 0);

    std::fs::write(&manifest, summarize_table("llm_summarizer.wasm", &llm)).unwrap();
    let llm_summary = tokio::task::spawn_blocking(move || cli_summarize(&manifest, &page))
        .await
        .unwrap();
    assert!(
        llm_summary.starts_with("Summary: ") && llm_summary.contains(QUERY),
        "the LLM summarizer answers from the chat endpoint: {llm_summary}"
    );
    assert_eq!(llm.requests(), 1, "one chat completion");
}

fn page() -> PageText {
    PageText {
        url: "https://example.org/tower".into(),
        title: Some("Tower".into()),
        text: PAGE.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_host_reloads_a_tool_in_place() {
    let llm = FakeUpstream::with_latency(Duration::from_millis(300))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(ToolHost::new(HostOptions::default()).unwrap());
    let extractive = ToolManifest::new(
        "summarize",
        ToolKind::Summarizer,
        dist("extractive_summarizer.wasm"),
    );
    let mut by_llm = ToolManifest::new(
        "summarize",
        ToolKind::Summarizer,
        dist("llm_summarizer.wasm"),
    );
    point_at_engine(&mut by_llm, llm.addr);

    let info = host.load_tool(&extractive).await.unwrap();
    assert_eq!(info.metadata.name, "extractive-summarizer");
    let first = host
        .summarize("summarize", QUERY, &page(), 200)
        .await
        .unwrap();
    assert!(
        first.contains("1889") && !first.starts_with("Summary: "),
        "{first}"
    );

    // Swap while a call is in flight: it finishes on the old component.
    let info = host.load_tool(&by_llm).await.unwrap();
    assert_eq!(info.metadata.name, "llm-summarizer");
    let in_flight = {
        let host = host.clone();
        tokio::spawn(async move { host.summarize("summarize", QUERY, &page(), 200).await })
    };
    while llm.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    host.load_tool(&extractive).await.unwrap();
    let after = host
        .summarize("summarize", QUERY, &page(), 200)
        .await
        .unwrap();
    assert_eq!(after, first, "the extractive summarizer is back");
    let old = in_flight.await.unwrap().unwrap();
    assert!(old.starts_with("Summary: "), "{old}");
    assert_eq!(llm.requests(), 1);

    // And from a manifest file that is edited between loads.
    let path = dir.path().join("tools.toml");
    std::fs::write(&path, summarize_table("llm_summarizer.wasm", &llm)).unwrap();
    host.load_manifest(&Manifest::load(&path).unwrap())
        .await
        .unwrap();
    let again = host
        .summarize("summarize", QUERY, &page(), 200)
        .await
        .unwrap();
    assert!(again.starts_with("Summary: "), "{again}");
    assert_eq!(host.tools().len(), 1, "one tool, replaced each time");
}
