use super::*;

const GOOD: &str = r#"
[tools.serp]
wasm = "dist/serp.wasm"
kind = "text-search"
allowed_outbound_hosts = ["https://serpapi.com", "http://127.0.0.1:7700"]
allowed_private_addresses = ["127.0.0.1"]
config = { base-url = "https://serpapi.com", top = 5, safe = true }
secrets = [
  { env = "SERPAPI_API_KEY", host = "https://serpapi.com", query = "api_key" },
  { env = "OTHER_KEY", host = "http://127.0.0.1:7700", header = "Authorization", prefix = "Bearer ", required = false },
]
limits = { memory_mib = 32, timeout_ms = 5000, requests_per_second = 2.5 }
read_only_dirs = [{ host = "data", guest = "/data" }]

[tools.reader]
wasm = "/abs/reader.wasm"
kind = "page-reader"
"#;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(text, Path::new("/etc/mmsr"))
}

#[test]
fn parses_a_full_table() {
    let m = parse(GOOD).unwrap();
    let t = m.get("serp").unwrap();
    assert_eq!(t.kind, ToolKind::TextSearch);
    assert_eq!(t.wasm, PathBuf::from("/etc/mmsr/dist/serp.wasm"));
    assert_eq!(t.allowed_outbound_hosts[1].port, 7700);
    assert_eq!(t.config["top"], "5");
    assert_eq!(t.config["safe"], "true");
    assert_eq!(
        t.secrets[0].placement,
        SecretPlacement::Query {
            param: "api_key".into()
        }
    );
    assert_eq!(
        t.secrets[1].placement,
        SecretPlacement::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into()
        }
    );
    assert!(t.secrets[0].required && !t.secrets[1].required);
    assert_eq!(t.limits.memory_mib, 32);
    assert_eq!(t.limits.response_bytes, Limits::default().response_bytes);
    assert_eq!(t.limits.requests_per_second, Some(2.5));
    assert_eq!(t.read_only_dirs[0].host, PathBuf::from("/etc/mmsr/data"));
    // Absolute paths stay absolute.
    assert_eq!(
        m.get("reader").unwrap().wasm,
        PathBuf::from("/abs/reader.wasm")
    );
}

/// Each bad manifest names its tool and field.
#[test]
fn refuses_bad_values_naming_tool_and_field() {
    let cases: &[(&str, &str)] = &[
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nallowed_hosts = []",
            "allowed_hosts",
        ),
        ("wasm = 'x.wasm'\nkind = 'search'", "kind"),
        ("kind = 'text-search'", "wasm"),
        ("wasm = 'x.txt'\nkind = 'text-search'", "wasm"),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nallowed_outbound_hosts = ['https://a.com/path']",
            "allowed_outbound_hosts",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nallowed_private_addresses = ['localhost']",
            "allowed_private_addresses",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nlimits = { memory_mib = 0 }",
            "limits.memory_mib",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nlimits = { memory_mib = 99999 }",
            "limits.memory_mib",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nlimits = { timeout_ms = 100, cpu_ms = 200 }",
            "limits.cpu_ms",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nlimits = { requests_per_second = -1.0 }",
            "limits.requests_per_second",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nlimits = { memory = 5 }",
            "limits.memory",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nlimits = { memory_mib = 'big' }",
            "limits.memory_mib",
        ),
        ("wasm = 5\nkind = 'text-search'", "wasm"),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nallowed_outbound_hosts = ['https://a.com']\nsecrets = [{ env = 'K', host = 'https://a.com', query = 5 }]",
            "secrets[0].query",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nsecrets = [{ env = 'K', host = 'https://a.com', query = 'k' }]",
            "secrets.host",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nallowed_outbound_hosts = ['https://a.com']\nsecrets = [{ env = 'K', host = 'https://a.com' }]",
            "secrets",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nallowed_outbound_hosts = ['https://a.com']\nsecrets = [{ env = 'K', host = 'https://a.com', header = 'host' }]",
            "secrets.header",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nallowed_outbound_hosts = ['https://a.com']\nsecrets = [{ env = 'lower', host = 'https://a.com', query = 'k' }]",
            "secrets.env",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nconfig = { a = [1] }",
            "config.a",
        ),
        (
            "wasm = 'x.wasm'\nkind = 'text-search'\nread_only_dirs = [{ host = 'd', guest = 'rel' }]",
            "read_only_dirs.guest",
        ),
    ];
    for (body, field) in cases {
        let text = format!("[tools.bad-tool]\n{body}\n");
        let err = parse(&text).expect_err(body);
        assert_eq!(err.tool.as_deref(), Some("bad-tool"), "{body}: {err}");
        assert_eq!(err.field.as_deref(), Some(*field), "{body}: {err}");
        let shown = err.to_string();
        assert!(
            shown.contains("bad-tool") && shown.contains(field),
            "{shown}"
        );
    }
}

#[test]
fn refuses_bad_names_and_top_level_keys() {
    let err = parse("[tools.Bad]\nwasm = 'x.wasm'\nkind = 'summarizer'\n").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("name"));
    let err = parse("[tool.x]\nwasm = 'x.wasm'\n").unwrap_err();
    assert!(err.message.contains("unknown field `tool`"), "{err}");
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tools.toml");
    std::fs::write(&path, "[tools.x]\nwasm = 'x.wasm'\nkind = 'nope'\n").unwrap();
    let err = Manifest::load(&path).unwrap_err();
    assert_eq!(err.path.as_deref(), Some(path.as_path()));
    assert!(err.to_string().contains("tools.toml"));
    let err = Manifest::load(&dir.path().join("missing.toml")).unwrap_err();
    assert!(err.message.contains("cannot read"), "{err}");
}

#[test]
fn builds_and_overrides_in_code() {
    let mut m = parse(GOOD).unwrap();
    let t = m.tools.get_mut("reader").unwrap();
    let origin = t.allow_loopback("127.0.0.1:9999".parse().unwrap());
    assert_eq!(origin.origin(), "http://127.0.0.1:9999");
    t.config.insert("base-url".into(), origin.origin());
    assert!(
        t.allowed_private_addresses
            .contains(&"127.0.0.1".parse().unwrap())
    );
    m.validate().unwrap();

    let mut tool = ToolManifest::new("fresh", ToolKind::Summarizer, "/x/y.wasm");
    tool.limits.timeout_ms = 0;
    assert_eq!(
        m.insert(tool).unwrap_err().field.as_deref(),
        Some("limits.timeout_ms")
    );
}
