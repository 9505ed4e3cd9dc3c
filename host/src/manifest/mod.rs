//! The tool manifest (`configs/tools.toml`): one table per tool, declaring
//! what the tool is and everything it may touch. Permissions sit next to the
//! component, as in Spin's `allowed_outbound_hosts`.
//!
//! ```toml
//! [tools.serpapi-search]
//! wasm = "../tools-wasm/dist/serpapi_search.wasm"   # relative to this file
//! kind = "text-search"          # text-search | image-search | page-reader | summarizer
//! allowed_outbound_hosts = ["https://serpapi.com"]  # scheme://host[:port], exact
//! allowed_private_addresses = []                    # e.g. ["127.0.0.1"] for a local engine
//! config = { base-url = "https://serpapi.com" }    # read by the tool via `config.get`
//! secrets = [{ env = "SERPAPI_API_KEY", host = "https://serpapi.com", query = "api_key" }]
//! # or: { env = "JINA_API_KEY", host = "https://r.jina.ai", header = "authorization", prefix = "Bearer " }
//! limits = { memory_mib = 64, timeout_ms = 10000, cpu_ms = 2000, response_bytes = 4194304,
//!            request_bytes = 1048576, concurrency = 16, requests_per_second = 5.0 }
//! read_only_dirs = [{ host = "../data/corpus", guest = "/corpus" }]
//! ```
//!
//! Unknown keys and bad values are refused with a [`ManifestError`] naming
//! the tool and the field. Code that builds or rewrites manifests (tests, the
//! local-engine backend) edits the public fields, or uses
//! [`ToolManifest::new`] and [`ToolManifest::allow_loopback`], then calls
//! [`Manifest::validate`] (the runtime validates again at load).

mod limits;
mod outbound;

pub use limits::{Limits, MAX_MEMORY_MIB};
pub use outbound::{AllowedHost, SecretPlacement, SecretSpec};

use crate::tools::ToolKind;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Every tool of one manifest, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Manifest {
    /// The file it was read from, for error messages; `None` when built in code.
    pub path: Option<PathBuf>,
    pub tools: BTreeMap<String, ToolManifest>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ToolManifest {
    pub name: String,
    /// The component, resolved against the manifest's directory.
    pub wasm: PathBuf,
    pub kind: ToolKind,
    pub allowed_outbound_hosts: Vec<AllowedHost>,
    /// Loopback, private or link-local addresses this tool may reach anyway.
    pub allowed_private_addresses: Vec<IpAddr>,
    /// Non-secret settings, served to the guest by `mmsr:search/config.get`.
    pub config: BTreeMap<String, String>,
    pub secrets: Vec<SecretSpec>,
    pub limits: Limits,
    pub read_only_dirs: Vec<DirGrant>,
}

/// A host directory the tool may read (never write), mounted at `guest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
}

/// A refused manifest: which file, tool and field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub path: Option<PathBuf>,
    pub tool: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "manifest")?;
        if let Some(p) = &self.path {
            write!(f, " {}", p.display())?;
        }
        if let Some(t) = &self.tool {
            write!(f, ": tool `{t}`")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

impl ManifestError {
    fn new(tool: &str, field: &str, message: impl Into<String>) -> Self {
        ManifestError {
            path: None,
            tool: Some(tool.to_string()),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn in_file(mut self, path: Option<&Path>) -> Self {
        if self.path.is_none() {
            self.path = path.map(Path::to_path_buf);
        }
        self
    }
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            path: Some(path.to_path_buf()),
            tool: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut manifest = Self::parse(&text, base).map_err(|e| e.in_file(Some(path)))?;
        manifest.path = Some(path.to_path_buf());
        Ok(manifest)
    }

    /// Parses manifest text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError {
            path: None,
            tool: None,
            field: None,
            message: e.to_string(),
        })?;
        let mut tools = BTreeMap::new();
        for (name, value) in raw.tools {
            let raw_tool: RawTool = serde_path_to_error::deserialize(value).map_err(
                |e: serde_path_to_error::Error<toml::de::Error>| {
                    let path = e.path().to_string();
                    let msg = e.inner().message().to_string();
                    // A missing key is named only by serde's message.
                    let field = if path == "." {
                        field_of_serde_error(&msg)
                    } else {
                        Some(path)
                    };
                    ManifestError {
                        path: None,
                        tool: Some(name.clone()),
                        field,
                        message: msg,
                    }
                },
            )?;
            let tool = raw_tool.into_tool(&name, base_dir)?;
            tool.validate()?;
            tools.insert(name, tool);
        }
        Ok(Manifest { path: None, tools })
    }

    pub fn get(&self, name: &str) -> Option<&ToolManifest> {
        self.tools.get(name)
    }

    /// Adds or replaces a tool after validating it.
    pub fn insert(&mut self, tool: ToolManifest) -> Result<(), ManifestError> {
        tool.validate()
            .map_err(|e| e.in_file(self.path.as_deref()))?;
        self.tools.insert(tool.name.clone(), tool);
        Ok(())
    }

    /// Validates every tool (after edits in code).
    pub fn validate(&self) -> Result<(), ManifestError> {
        for (key, tool) in &self.tools {
            if key != &tool.name {
                return Err(ManifestError::new(
                    key,
                    "name",
                    format!(
                        "table key {key:?} differs from the tool's name {:?}",
                        tool.name
                    ),
                )
                .in_file(self.path.as_deref()));
            }
            tool.validate()
                .map_err(|e| e.in_file(self.path.as_deref()))?;
        }
        Ok(())
    }
}

impl ToolManifest {
    /// A tool with no permissions and default limits.
    pub fn new(name: impl Into<String>, kind: ToolKind, wasm: impl Into<PathBuf>) -> Self {
        ToolManifest {
            name: name.into(),
            wasm: wasm.into(),
            kind,
            allowed_outbound_hosts: Vec::new(),
            allowed_private_addresses: Vec::new(),
            config: BTreeMap::new(),
            secrets: Vec::new(),
            limits: Limits::default(),
            read_only_dirs: Vec::new(),
        }
    }

    /// Allows `scheme://host[:port]`.
    pub fn allow_host(&mut self, origin: &str) -> Result<AllowedHost, ManifestError> {
        let host = AllowedHost::parse(origin)
            .map_err(|e| ManifestError::new(&self.name, "allowed_outbound_hosts", e))?;
        if !self.allowed_outbound_hosts.contains(&host) {
            self.allowed_outbound_hosts.push(host.clone());
        }
        Ok(host)
    }

    /// Allows plain HTTP to a local server (e.g. the offline search engine)
    /// and its private address; returns the origin to use as a base URL.
    pub fn allow_loopback(&mut self, addr: SocketAddr) -> AllowedHost {
        let host = AllowedHost {
            https: false,
            host: addr.ip().to_string(),
            port: addr.port(),
        };
        if !self.allowed_outbound_hosts.contains(&host) {
            self.allowed_outbound_hosts.push(host.clone());
        }
        if !self.allowed_private_addresses.contains(&addr.ip()) {
            self.allowed_private_addresses.push(addr.ip());
        }
        host
    }

    /// Checks names, ranges and cross-references (a secret's host must be allowed).
    pub fn validate(&self) -> Result<(), ManifestError> {
        let err = |field: &str, msg: String| ManifestError::new(&self.name, field, msg);
        let valid_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(err(
                "name",
                format!(
                    "{:?}: use 1-64 characters of a-z, 0-9, '-' and '_'",
                    self.name
                ),
            ));
        }
        if self.wasm.extension().and_then(|e| e.to_str()) != Some("wasm") {
            return Err(err(
                "wasm",
                format!("{} is not a .wasm file", self.wasm.display()),
            ));
        }
        self.limits.validate().map_err(|(f, m)| err(f, m))?;
        for key in self.config.keys() {
            if key.is_empty() {
                return Err(err("config", "empty key".into()));
            }
        }
        for s in &self.secrets {
            let valid_env = !s.env.is_empty()
                && s.env
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !valid_env {
                return Err(err(
                    "secrets.env",
                    format!("{:?}: use A-Z, 0-9 and '_'", s.env),
                ));
            }
            if !self.allowed_outbound_hosts.contains(&s.host) {
                return Err(err(
                    "secrets.host",
                    format!(
                        "secret {} is bound to {}, which is not in allowed_outbound_hosts",
                        s.env, s.host
                    ),
                ));
            }
            match &s.placement {
                SecretPlacement::Header { name, .. } => {
                    let parsed = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        err("secrets.header", format!("{name:?} is not a header name"))
                    })?;
                    if wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(&parsed)
                        || parsed == http::header::CONTENT_LENGTH
                    {
                        return Err(err(
                            "secrets.header",
                            format!("{name:?} is a framing header, not a place for a secret"),
                        ));
                    }
                }
                SecretPlacement::Query { param } => {
                    if param.is_empty() || param.contains(['&', '=', '#', ' ']) {
                        return Err(err(
                            "secrets.query",
                            format!("{param:?} is not a query parameter name"),
                        ));
                    }
                }
            }
        }
        for d in &self.read_only_dirs {
            if !d.guest.starts_with('/') {
                return Err(err(
                    "read_only_dirs.guest",
                    format!("{:?} must be an absolute guest path", d.guest),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    tools: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    wasm: String,
    kind: String,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    allowed_private_addresses: Vec<String>,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    #[serde(default)]
    secrets: Vec<RawSecret>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    read_only_dirs: Vec<RawDir>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    env: String,
    host: String,
    header: Option<String>,
    prefix: Option<String>,
    query: Option<String>,
    #[serde(default = "yes")]
    required: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    host: String,
    guest: String,
}

impl RawTool {
    fn into_tool(self, name: &str, base_dir: &Path) -> Result<ToolManifest, ManifestError> {
        let err = |field: &str, msg: String| ManifestError::new(name, field, msg);
        let kind = self.kind.parse::<ToolKind>().map_err(|e| err("kind", e))?;
        if self.wasm.is_empty() {
            return Err(err("wasm", "empty path".into()));
        }
        let allowed_outbound_hosts = self
            .allowed_outbound_hosts
            .iter()
            .map(|h| AllowedHost::parse(h).map_err(|e| err("allowed_outbound_hosts", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let allowed_private_addresses = self
            .allowed_private_addresses
            .iter()
            .map(|a| {
                a.parse::<IpAddr>().map_err(|_| {
                    err(
                        "allowed_private_addresses",
                        format!("{a:?} is not an IP address"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config = self
            .config
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(err(
                            &format!("config.{k}"),
                            format!(
                                "must be a string, number or boolean, not a {}",
                                other.type_str()
                            ),
                        ));
                    }
                };
                Ok((k, s))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        let secrets = self
            .secrets
            .into_iter()
            .map(|s| {
                let host = AllowedHost::parse(&s.host).map_err(|e| err("secrets.host", e))?;
                let placement = match (s.header, s.query) {
                    (Some(name), None) => SecretPlacement::Header {
                        name: name.to_ascii_lowercase(),
                        prefix: s.prefix.unwrap_or_default(),
                    },
                    (None, Some(param)) if s.prefix.is_none() => SecretPlacement::Query { param },
                    (None, Some(_)) => {
                        return Err(err(
                            "secrets.prefix",
                            "prefix applies to header secrets only".into(),
                        ));
                    }
                    _ => {
                        return Err(err(
                            "secrets",
                            format!("secret {}: give exactly one of `header` or `query`", s.env),
                        ));
                    }
                };
                Ok(SecretSpec {
                    env: s.env,
                    host,
                    placement,
                    required: s.required,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let read_only_dirs = self
            .read_only_dirs
            .into_iter()
            .map(|d| DirGrant {
                host: base_dir.join(d.host),
                guest: d.guest,
            })
            .collect();
        Ok(ToolManifest {
            name: name.to_string(),
            wasm: base_dir.join(self.wasm),
            kind,
            allowed_outbound_hosts,
            allowed_private_addresses,
            config,
            secrets,
            limits: self.limits,
            read_only_dirs,
        })
    }
}

/// Pulls the field name out of serde's "missing field `x`".
fn field_of_serde_error(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let end = start + msg[start..].find('`')?;
    Some(msg[start..end].to_string())
}

#[cfg(test)]
mod tests;
