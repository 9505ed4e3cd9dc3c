//! Runs `mmsr-host demo` and `mmsr-host evidence` for the demo tests.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn demo(dir: &Path, seed: u64, extra: &[&str]) -> (String, Vec<Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_mmsr-host"))
        .current_dir(repo())
        .env("MMSR_LOG", "warn")
        .args(["demo", "--world"])
        .arg(dir.join("world"))
        .arg("--runs")
        .arg(dir.join("runs"))
        .args(["--seed", &seed.to_string()])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evidence = std::fs::read_to_string(dir.join("runs/evidence.json")).unwrap();
    (stdout, serde_json::from_str(&evidence).unwrap())
}

/// `mmsr-host evidence --json` over demo run dirs.
pub fn evidence(runs: &[PathBuf]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mmsr-host"))
        .arg("evidence")
        .arg("--json")
        .args(runs)
        .output()
        .unwrap()
}
