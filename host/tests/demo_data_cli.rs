//! `mmsr-host demo-data` end to end, as separate processes: the same seed
//! writes the same bytes (hash maps and thread pools included), and a
//! non-empty foreign directory is refused.

use mmsr_trainer::testkit::files_under;
use std::path::Path;
use std::process::Command;

const SMALL: &str =
    "vocab_size = 700\n[world]\nknown = 6\nunknown_train = 12\nunknown_test = 6\ndecoys = 6\n";

fn host() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mmsr-host"))
}

fn generate(config: &Path, out: &Path, seed: u64) -> std::process::Output {
    host()
        .args([
            "demo-data",
            "--seed",
            &seed.to_string(),
            "--json",
            "--config",
        ])
        .arg(config)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn same_seed_same_bytes_across_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("small.toml");
    std::fs::write(&config, SMALL).unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a, &b] {
        let out = generate(&config, dir, 5);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["towns"], 24);
    }
    let (fa, fb) = (files_under(&a), files_under(&b));
    assert_eq!(fa.len(), fb.len());
    for (path, bytes) in &fa {
        assert!(
            fb.get(path) == Some(bytes),
            "{} differs between processes",
            path.display()
        );
    }
    // Regenerating into an existing world dir replaces it.
    assert!(generate(&config, &a, 6).status.success());
}

#[test]
fn refuses_a_non_empty_directory_that_is_not_a_world() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let config = tmp.path().join("small.toml");
    std::fs::write(&config, SMALL).unwrap();
    let out = generate(&config, tmp.path(), 0);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not empty") && err.contains(&tmp.path().display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("precious.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn a_bad_config_key_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "[world]\nknwon = 3\n").unwrap();
    let out = generate(&config, &tmp.path().join("w"), 0);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("knwon") && err.contains("bad.toml"), "{err}");
}

/// A run killed at any moment leaves the old world whole or the new one
/// whole, never a mix of two seeds (it used to overwrite file by file).
#[test]
fn a_killed_run_leaves_one_whole_world() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("medium.toml");
    std::fs::write(
        &config,
        "vocab_size = 700\n[world]\nknown = 30\nunknown_train = 60\nunknown_test = 30\ndecoys = 30\n",
    )
    .unwrap();
    let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
    assert!(generate(&config, &old, 5).status.success());
    let started = std::time::Instant::now();
    assert!(generate(&config, &new, 6).status.success());
    let whole = started.elapsed();
    let (old_files, new_files) = (files_under(&old), files_under(&new));
    let world = tmp.path().join("world");
    // Kills spread over a whole run, so some land while files are written.
    for tenth in 1..10 {
        std::fs::remove_dir_all(&world).ok();
        assert!(generate(&config, &world, 5).status.success());
        let mut child = host()
            .args(["demo-data", "--seed", "6", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&world)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole * tenth / 10);
        let _ = child.kill();
        child.wait().unwrap();
        let got = files_under(&world);
        assert!(
            got == old_files || got == new_files,
            "killed after {tenth}/10 of a run: a world that is neither seed 5 nor seed 6"
        );
    }
    // The next run into the same dir removes what the killed ones left
    // beside it; another world's staging dirs of a live run are kept.
    let live = tmp
        .path()
        .join(format!(".demo-data-new-world-{}-x", std::process::id()));
    std::fs::create_dir(&live).unwrap();
    assert!(generate(&config, &world, 5).status.success());
    let mut left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".demo-data-"))
        .collect();
    left.sort();
    assert_eq!(left, [live.file_name().unwrap().to_str().unwrap()]);
}
