//! Purpose-made hostile components (`tests/guests/hostile*`, `raw-socket`) in
//! the real host: each attack must end in a typed `ToolError` the caller
//! sees, while a well-behaved tool keeps answering during and after every
//! attack with zero errors. Components the host must not run at all are
//! refused at load with an error naming the culprit. Needs `make tools`.

use mmsr_host::fakes::{FakeUpstream, Fault};
use mmsr_host::manifest::{DirGrant, SecretPlacement, SecretSpec, ToolManifest};
use mmsr_host::net::StaticHosts;
use mmsr_host::pipeline::point_at_engine;
use mmsr_host::runtime::{HostOptions, ToolHost};
use mmsr_host::tools::{ToolError, ToolInvoker, ToolKind};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const KEYED_SECRET: &str = "keyed-secret-value-7f3a";
const OWN_SECRET: &str = "own-secret-value-91c2";
/// Every attack must end well within this, whatever it does.
const ATTACK_DEADLINE: Duration = Duration::from_secs(10);

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

fn host_options() -> HostOptions {
    let ip = |s: &str| vec![s.parse::<IpAddr>().unwrap()];
    let hosts: StaticHosts = [
        ("metadata.test".to_string(), ip("169.254.169.254")),
        ("intranet.test".to_string(), ip("10.0.0.7")),
        ("loop.test".to_string(), ip("127.0.0.1")),
    ]
    .into_iter()
    .collect();
    HostOptions {
        secrets: Arc::new(|k| match k {
            "HOSTILE_KEYED_SECRET" => Some(KEYED_SECRET.into()),
            "HOSTILE_OWN_SECRET" => Some(OWN_SECRET.into()),
            _ => None,
        }),
        hosts,
        ..HostOptions::default()
    }
}

/// The well-behaved control tool, pointed at `fake`.
fn good_tool(name: &str, fake: &FakeUpstream) -> ToolManifest {
    let mut t = ToolManifest::new(name, ToolKind::TextSearch, dist("well_behaved.wasm"));
    point_at_engine(&mut t, fake.addr);
    t.limits.concurrency = 64;
    t.limits.timeout_ms = 5000;
    t
}

/// A `hostile` tool running `attack`, with tight limits.
fn hostile(name: &str, attack: &str, target: &str) -> ToolManifest {
    let mut t = ToolManifest::new(name, ToolKind::TextSearch, dist("hostile.wasm"));
    t.config.insert("attack".into(), attack.into());
    t.config.insert("target-url".into(), target.into());
    t.limits.timeout_ms = 500;
    t.limits.memory_mib = 32;
    t.limits.response_bytes = 1 << 20;
    t
}

fn allow(t: &mut ToolManifest, origin: &str) {
    t.allow_host(origin).unwrap();
}

fn grant_loopback(t: &mut ToolManifest) {
    t.allowed_private_addresses
        .push("127.0.0.1".parse().unwrap());
}

type Check = Box<dyn Fn(&ToolError) -> bool>;

fn denied_with(needle: &'static str) -> Check {
    Box::new(move |e| matches!(e, ToolError::Denied(m) if m.contains(needle)))
}

fn trap_with(needle: &'static str) -> Check {
    Box::new(move |e| matches!(e, ToolError::Trap { reason, .. } if reason.contains(needle)))
}

struct Attack {
    tool: ToolManifest,
    expect: Check,
}

/// Everything the attacks need: the fakes they aim at and the host serving
/// them next to the control tools.
struct Arena {
    host: Arc<ToolHost>,
    good: FakeUpstream,
    evil: FakeUpstream,
    keyed: FakeUpstream,
    huge: FakeUpstream,
    grant: tempfile::TempDir,
    attacks: Vec<Attack>,
}

async fn arena() -> Arena {
    let good = FakeUpstream::start().await.unwrap();
    let evil = FakeUpstream::start().await.unwrap();
    let keyed = FakeUpstream::start().await.unwrap();
    keyed.require_header("x-api-key", KEYED_SECRET);
    let huge = FakeUpstream::start().await.unwrap();
    huge.set_fault(Some(Fault::HugeBody { bytes: 64 << 20 }));

    let host = Arc::new(ToolHost::new(host_options()).unwrap());
    host.load_tool(&good_tool("good", &good)).await.unwrap();

    // The keyed tool holds a secret for its upstream; the hostile ones must never get it.
    let mut keyed_tool = good_tool("keyed", &keyed);
    keyed_tool.secrets.push(SecretSpec {
        env: "HOSTILE_KEYED_SECRET".into(),
        host: keyed_tool.allowed_outbound_hosts[0].clone(),
        placement: SecretPlacement::Header {
            name: "x-api-key".into(),
            prefix: String::new(),
        },
        required: true,
    });
    host.load_tool(&keyed_tool).await.unwrap();

    // Reaching 127.0.0.1 by a name works when the address is granted: the
    // refusals below are the address checks, not a broken resolver.
    let mut by_name = good_tool("good-by-name", &good);
    by_name.allowed_outbound_hosts.clear();
    allow(
        &mut by_name,
        &format!("http://loop.test:{}", good.addr.port()),
    );
    by_name.config.insert(
        "base-url".into(),
        format!("http://loop.test:{}", good.addr.port()),
    );
    host.load_tool(&by_name).await.unwrap();

    let grant = tempfile::tempdir().unwrap();
    let attacks = attacks(&good, &evil, &keyed, &huge, grant.path());
    for a in &attacks {
        host.load_tool(&a.tool)
            .await
            .unwrap_or_else(|e| panic!("loading {}: {e:#}", a.tool.name));
    }
    Arena {
        host,
        good,
        evil,
        keyed,
        huge,
        grant,
        attacks,
    }
}

fn attacks(
    good: &FakeUpstream,
    evil: &FakeUpstream,
    keyed: &FakeUpstream,
    huge: &FakeUpstream,
    grant: &Path,
) -> Vec<Attack> {
    let evil_origin = format!("http://127.0.0.1:{}", evil.addr.port());
    let evil_port = evil.addr.port();
    // Off-list: the tool may reach `evil` only.
    let off_list = |name: &str, target: String| {
        let mut t = hostile(name, "fetch", &target);
        allow(&mut t, &evil_origin);
        grant_loopback(&mut t);
        Attack {
            tool: t,
            expect: denied_with("not in allowed_outbound_hosts"),
        }
    };
    // On the list by name, but the name resolves to a non-public address.
    let private_name = |name: &str, origin: String, why: &'static str| {
        let mut t = hostile(name, "fetch", &format!("{origin}/search?q=x"));
        allow(&mut t, &origin);
        Attack {
            tool: t,
            expect: denied_with(why),
        }
    };

    let mut out = vec![
        off_list(
            "off-list-port",
            format!("http://127.0.0.1:{}/search?q=x", good.addr.port()),
        ),
        off_list("off-list-host", "http://example.com/".into()),
        off_list(
            "off-list-metadata-ip",
            "http://169.254.169.254/latest/meta-data/".into(),
        ),
        off_list(
            "off-list-scheme",
            format!("https://127.0.0.1:{evil_port}/search?q=x"),
        ),
        private_name(
            "private-localhost",
            format!("http://localhost:{evil_port}"),
            "a loopback address",
        ),
        private_name(
            "private-loop-name",
            format!("http://loop.test:{evil_port}"),
            "loop.test resolves to 127.0.0.1, a loopback address",
        ),
        private_name(
            "private-metadata-name",
            "http://metadata.test".into(),
            "metadata.test resolves to 169.254.169.254, a link-local address",
        ),
        private_name(
            "private-intranet-name",
            format!("http://intranet.test:{evil_port}"),
            "intranet.test resolves to 10.0.0.7, a private address",
        ),
    ];

    let mut env = hostile("read-env", "env", "");
    env.limits.timeout_ms = 2000;
    out.push(Attack {
        tool: env,
        expect: denied_with("environment empty: 0 variables, 0 arguments"),
    });

    // Allowed to reach the keyed upstream, but with no secret for it; it has
    // its own secret, bound to `evil` only.
    let keyed_origin = format!("http://127.0.0.1:{}", keyed.addr.port());
    let mut steal = hostile("steal-secret", "steal-secret", &keyed_origin);
    allow(&mut steal, &keyed_origin);
    allow(&mut steal, &evil_origin);
    grant_loopback(&mut steal);
    steal.secrets.push(SecretSpec {
        env: "HOSTILE_OWN_SECRET".into(),
        host: steal.allowed_outbound_hosts[1].clone(),
        placement: SecretPlacement::Query {
            param: "api_key".into(),
        },
        required: true,
    });
    steal.limits.timeout_ms = 2000;
    out.push(Attack {
        tool: steal,
        expect: Box::new(|e| {
            matches!(e, ToolError::Upstream { status: 401, message }
                if message.contains("saw env: []; config: []")
                    && !message.contains(KEYED_SECRET)
                    && !message.contains(OWN_SECRET))
        }),
    });

    // The CPU budget is charged only while the loop runs, so it is set well
    // below the wall time: sharing the cores, it still fires first.
    let mut spin = hostile("spin", "spin", "");
    spin.limits.timeout_ms = 3000;
    spin.limits.cpu_ms = Some(100);
    out.push(Attack {
        tool: spin,
        expect: trap_with("CPU time limit of 100 ms exceeded"),
    });
    out.push(Attack {
        tool: hostile("sleep", "sleep", ""),
        expect: Box::new(|e| matches!(e, ToolError::Timeout(m) if m.contains("500 ms"))),
    });
    out.push(Attack {
        tool: hostile("memory-bomb", "memory", ""),
        expect: trap_with("memory limit of 32 MiB exceeded"),
    });
    let huge_origin = format!("http://127.0.0.1:{}", huge.addr.port());
    let mut big = hostile(
        "huge-response",
        "fetch",
        &format!("{huge_origin}/search?q=x"),
    );
    allow(&mut big, &huge_origin);
    grant_loopback(&mut big);
    big.limits.timeout_ms = 3000;
    out.push(Attack {
        tool: big,
        expect: denied_with("response_bytes limit of 1048576"),
    });
    out.push(Attack {
        tool: hostile("panic", "panic", ""),
        expect: trap_with("hostile guest panicked on purpose"),
    });

    // Files: granted one directory, it tries to get out of it.
    let data = grant.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("allowed.txt"), "hello").unwrap();
    std::fs::write(grant.join("outside.txt"), "outside canary").unwrap();
    std::os::unix::fs::symlink(grant.join("outside.txt"), data.join("escape")).unwrap();
    let mut files = ToolManifest::new(
        "file-read",
        ToolKind::TextSearch,
        dist("hostile_files.wasm"),
    );
    files.read_only_dirs.push(DirGrant {
        host: data.clone(),
        guest: "/data".into(),
    });
    files
        .config
        .insert("control".into(), "/data/allowed.txt".into());
    files.config.insert(
        "read".into(),
        format!(
            "/etc/passwd|/data/../outside.txt|/data/escape|{}|/proc/self/environ",
            grant.join("outside.txt").display()
        ),
    );
    files.config.insert("write".into(), "/data/new.txt".into());
    files.limits.timeout_ms = 2000;
    out.push(Attack {
        tool: files,
        expect: Box::new(|e| {
            matches!(e, ToolError::Denied(m)
                if m.starts_with("control read 5 bytes; refused: ")
                    && ["/etc/passwd", "/data/../outside.txt", "/data/escape", "outside.txt", "list /", "write /data/new.txt"]
                        .iter()
                        .all(|p| m.contains(p)))
        }),
    });
    out
}

/// Calls `tool` of the host again and again until `stop` is set and at
/// least `min_calls` finished; returns (successes, errors).
async fn keep_calling(
    host: Arc<ToolHost>,
    tool: &'static str,
    stop: Arc<AtomicBool>,
    min_calls: usize,
) -> (usize, Vec<ToolError>) {
    let (mut ok, mut errors) = (0, Vec::new());
    let mut i = 0;
    while !(stop.load(Ordering::SeqCst) && ok + errors.len() >= min_calls) {
        match host.text_search(tool, &format!("control {i}"), 3).await {
            Ok(r) if r.len() == 3 && r[0].title == format!("Result 1 for control {i}") => ok += 1,
            Ok(r) => errors.push(ToolError::Internal(format!("wrong results {r:?}"))),
            Err(e) => errors.push(e),
        }
        i += 1;
    }
    (ok, errors)
}

async fn attack(
    host: &ToolHost,
    name: &str,
) -> Result<Vec<mmsr_host::tools::WebResult>, ToolError> {
    let started = Instant::now();
    let r = tokio::time::timeout(ATTACK_DEADLINE, host.text_search(name, "attack", 3))
        .await
        .unwrap_or_else(|_| panic!("attack {name} was not stopped within {ATTACK_DEADLINE:?}"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "attack {name} took {:?}",
        started.elapsed()
    );
    r
}

/// 64 control calls at once, all of which must succeed.
async fn control_burst(host: &ToolHost) {
    let calls = (0..64).map(|i| async move {
        let tool = if i % 2 == 0 { "good" } else { "good-by-name" };
        host.text_search(tool, &format!("after {i}"), 3).await
    });
    let errors: Vec<ToolError> = futures::future::join_all(calls)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert!(errors.is_empty(), "control calls failed: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attack_ends_in_a_typed_error_while_good_calls_go_on() {
    let arena = arena().await;
    let host = &arena.host;
    let mut unexplained = Vec::new();
    for a in &arena.attacks {
        let name = a.tool.name.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let background = tokio::spawn(keep_calling(host.clone(), "good", stop.clone(), 3));
        let outcome = attack(host, &name).await;
        stop.store(true, Ordering::SeqCst);
        let (ok, errors) = background.await.unwrap();
        match &outcome {
            Err(e) if (a.expect)(e) => {}
            other => panic!("attack {name}: unexpected outcome {other:?}"),
        }
        assert!(ok >= 3, "attack {name}: only {ok} control calls finished");
        unexplained.extend(errors.into_iter().map(|e| format!("during {name}: {e}")));
    }
    assert!(unexplained.is_empty(), "{unexplained:#?}");
    control_burst(host).await;

    // Nothing the attacks aimed at was reached, and no secret left its origin.
    let hostile_hits = |fake: &FakeUpstream| {
        fake.seen()
            .into_iter()
            .filter(|r| r.headers.contains_key("x-hostile"))
            .collect::<Vec<_>>()
    };
    assert!(
        hostile_hits(&arena.good).is_empty(),
        "an off-list request got through"
    );
    assert!(
        hostile_hits(&arena.evil).is_empty(),
        "a private-address request got through"
    );
    assert_eq!(
        hostile_hits(&arena.huge).len(),
        1,
        "the huge-response request was made"
    );
    let stolen = hostile_hits(&arena.keyed);
    assert_eq!(
        stolen.len(),
        1,
        "the steal attempt reached the keyed upstream"
    );
    for r in &stolen {
        assert_eq!(
            r.headers["x-api-key"], "guessed",
            "only the guest's own forgery"
        );
        let everything = format!("{} {:?}", r.uri, r.headers);
        assert!(
            !everything.contains(KEYED_SECRET) && !everything.contains(OWN_SECRET),
            "a secret reached another tool's request: {everything}"
        );
    }
    // The keyed tool itself gets its secret added, and its calls succeed.
    let hits = host.text_search("keyed", "with key", 2).await.unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(
        arena.keyed.last_headers().unwrap()["x-api-key"],
        KEYED_SECRET
    );
    // The grant stayed read-only and nothing outside it changed.
    assert!(!arena.grant.path().join("data/new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(arena.grant.path().join("outside.txt")).unwrap(),
        "outside canary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_attacks_at_once_leave_the_host_serving() {
    let arena = arena().await;
    let host = &arena.host;
    let stop = Arc::new(AtomicBool::new(false));
    let background: Vec<_> = (0..4)
        .map(|i| {
            let tool = if i % 2 == 0 { "good" } else { "good-by-name" };
            tokio::spawn(keep_calling(host.clone(), tool, stop.clone(), 5))
        })
        .collect();
    // Each attack twice, all at once.
    let all = arena
        .attacks
        .iter()
        .chain(arena.attacks.iter())
        .map(|a| async move { (a, attack(host, &a.tool.name).await) });
    let outcomes = futures::future::join_all(all).await;
    stop.store(true, Ordering::SeqCst);
    for (a, outcome) in outcomes {
        match &outcome {
            Err(e) if (a.expect)(e) => {}
            other => panic!("attack {}: unexpected outcome {other:?}", a.tool.name),
        }
    }
    let mut unexplained = Vec::new();
    for b in background {
        let (ok, errors) = b.await.unwrap();
        assert!(ok >= 5);
        unexplained.extend(errors);
    }
    assert!(unexplained.is_empty(), "{unexplained:#?}");
    control_burst(host).await;
}

/// Pooled slots are reused, and a reused slot keeps its pages resident: a
/// call must still never see what the last call on the slot left in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_never_sees_what_the_last_call_left_in_memory() {
    let host = ToolHost::new(host_options()).unwrap();
    host.load_tool(&hostile("snoop", "snoop", ""))
        .await
        .unwrap();
    for round in 0..5 {
        match host.text_search("snoop", "x", 1).await {
            Err(ToolError::Denied(m)) if m == "fresh memory: 0 of 4194304 bytes non-zero" => {}
            other => panic!("round {round}: {other:?}"),
        }
    }
}

/// The load error for `tool`, as the caller reads it.
async fn refusal(host: &ToolHost, tool: &ToolManifest) -> String {
    match host.load_tool(tool).await {
        Ok(info) => panic!("{} was accepted: {info:?}", tool.name),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_the_host_must_not_run_are_refused_at_load() {
    let host = ToolHost::new(host_options()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tool = |name: &str, kind: ToolKind, wasm: PathBuf| ToolManifest::new(name, kind, wasm);

    let sockets = refusal(
        &host,
        &tool("raw", ToolKind::TextSearch, dist("raw_socket.wasm")),
    )
    .await;
    assert!(
        sockets.contains("tool `raw`") && sockets.contains("wasi:sockets/tcp@0.2"),
        "{sockets}"
    );
    let inspected = host.inspect(&dist("raw_socket.wasm")).await;
    assert!(
        inspected
            .verdict
            .as_ref()
            .is_err_and(|e| e.contains("wasi:sockets/tcp-create-socket")),
        "{:?}",
        inspected.verdict
    );

    // Files only with a grant.
    let files = refusal(
        &host,
        &tool("files", ToolKind::TextSearch, dist("hostile_files.wasm")),
    )
    .await;
    assert!(
        files.contains("wasi:filesystem/preopens@0.2") && files.contains("read_only_dirs"),
        "{files}"
    );

    // A core module, not a component; garbage; nothing at all.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = refusal(&host, &tool("core", ToolKind::TextSearch, core.clone())).await;
    assert!(
        err.contains("tool `core`")
            && err.contains("not a usable component")
            && err.contains("core.wasm")
            && err.contains("a core wasm module, not a component"),
        "{err}"
    );
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    let err = refusal(&host, &tool("junk", ToolKind::TextSearch, junk)).await;
    assert!(
        err.contains("not a usable component") && err.contains("not a WebAssembly file"),
        "{err}"
    );
    // A component cut short: the parser's own reason, not just "failed".
    let cut = dir.path().join("cut.wasm");
    let whole = std::fs::read(dist("hostile_files.wasm")).unwrap();
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let err = refusal(&host, &tool("cut", ToolKind::TextSearch, cut)).await;
    assert!(
        err.contains("cut.wasm") && err.contains("is out of bounds"),
        "{err}"
    );
    let err = refusal(
        &host,
        &tool("gone", ToolKind::TextSearch, dir.path().join("gone.wasm")),
    )
    .await;
    assert!(
        err.contains("field `wasm`") && err.contains("make tools"),
        "{err}"
    );
    // A FIFO would block the read until something wrote to it: refused,
    // both when loading and when inspecting.
    let fifo = dir.path().join("fifo.wasm");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = refusal(&host, &tool("fifo", ToolKind::TextSearch, fifo.clone())).await;
    assert!(
        err.contains("fifo.wasm") && err.contains("not a regular file"),
        "{err}"
    );
    let inspected = host.inspect(&fifo).await;
    assert!(
        inspected
            .verdict
            .as_ref()
            .is_err_and(|e| e.contains("not a regular file")),
        "{:?}",
        inspected.verdict
    );

    // The wrong world: a text-search tool as a page reader, a summarizer as a text search.
    let err = refusal(
        &host,
        &tool("wrong", ToolKind::PageReader, dist("well_behaved.wasm")),
    )
    .await;
    assert!(
        err.contains("mmsr:search/page-reader@0.1.0") && err.contains("it is a text-search tool"),
        "{err}"
    );
    let err = refusal(
        &host,
        &tool(
            "wrong2",
            ToolKind::TextSearch,
            dist("extractive_summarizer.wasm"),
        ),
    )
    .await;
    assert!(
        err.contains("mmsr:search/text-search@0.1.0") && err.contains("summarizer"),
        "{err}"
    );
    assert!(host.tools().is_empty(), "nothing refused was loaded");
}

/// `tools call` of a hostile tool in a child process whose environment holds
/// a secret: the guest sees no environment, and the secret is nowhere in the output.
#[test]
fn the_cli_host_gives_a_guest_no_environment() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("tools.toml");
    std::fs::write(
        &manifest,
        format!(
            "[tools.read-env]\nwasm = {:?}\nkind = \"text-search\"\nconfig = {{ attack = \"env\" }}\n",
            dist("hostile.wasm")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mmsr-host"))
        .args([
            "tools",
            "call",
            "read-env",
            "--query",
            "x",
            "--json",
            "--manifest",
        ])
        .arg(&manifest)
        .env("SERPAPI_API_KEY", OWN_SECRET)
        .env("MMSR_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    assert!(
        v["error"]["Denied"]
            .as_str()
            .is_some_and(|m| m.starts_with("environment empty")),
        "{v}"
    );
    assert!(!stdout.contains(OWN_SECRET) && !stderr.contains(OWN_SECRET));
}

/// `tools inspect` and `tools list` report a refused component with the import that sank it.
#[test]
fn the_cli_names_the_import_it_refuses() {
    let host_bin = env!("CARGO_BIN_EXE_mmsr-host");
    let out = std::process::Command::new(host_bin)
        .args(["tools", "inspect", "--json"])
        .arg(dist("raw_socket.wasm"))
        .env("MMSR_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accepted"], false, "{v}");
    assert!(
        v["refusal"]
            .as_str()
            .is_some_and(|r| r.contains("wasi:sockets/tcp@0.2")),
        "{v}"
    );
    assert_eq!(v["world"], "mmsr:search/text-search-tool@0.1.0");

    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("tools.toml");
    std::fs::write(
        &manifest,
        format!(
            "[tools.fine]\nwasm = {:?}\nkind = \"text-search\"\n\n\
             [tools.raw]\nwasm = {:?}\nkind = \"text-search\"\n",
            dist("well_behaved.wasm"),
            dist("raw_socket.wasm")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(host_bin)
        .args(["tools", "list", "--json", "--manifest"])
        .arg(&manifest)
        .env("MMSR_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a refused tool fails the listing");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let status = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["status"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(status("fine"), "ok");
    let raw = status("raw");
    assert!(
        raw.starts_with("refused: ") && raw.contains("wasi:sockets"),
        "{raw}"
    );
}
