//! Outbound network isolation for tools. A tool has no sockets; its only way
//! out is `wasi:http`, whose send hook ([`ToolHttpHooks`]) enforces the
//! tool's [`ToolNetPolicy`]:
//! - only the manifest's exact scheme + host + port;
//! - DNS resolved by the host, and loopback/private/link-local addresses
//!   refused unless the manifest lists that address;
//! - redirects are not followed: a 3xx goes back to the guest, and a request
//!   to its `Location` is checked like any other;
//! - timeouts clamped to the tool's limit; request and response bodies capped;
//! - secrets added on the way out for their bound origin only, replacing any
//!   value the guest set, so no tool ever sees a secret;
//! - everything goes through one pooled `reqwest` client (keep-alive, rustls,
//!   no proxies from the environment).

pub mod address;
mod body;
mod hooks;
pub mod policy;
mod resolver;

pub use hooks::ToolHttpHooks;
pub(crate) use hooks::error_chain;
pub use policy::{Origin, SecretValue, ToolNetPolicy};
pub use resolver::StaticHosts;

use resolver::CheckedResolver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The host's one outbound client, shared by every tool and call.
pub struct NetClient {
    client: reqwest::Client,
    resolver: Arc<CheckedResolver>,
}

impl NetClient {
    /// `hosts` answers those names instead of DNS (still checked by each tool's policy).
    pub fn new(hosts: StaticHosts) -> anyhow::Result<Self> {
        let resolver = Arc::new(CheckedResolver::with_static(hosts));
        let client = reqwest::Client::builder()
            // A proxy would make the connection, bypassing the address checks.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(resolver.clone())
            .connect_timeout(Duration::from_secs(10))
            // Under the local engine's 30 s idle cut-off (its header-read
            // timeout), so a pooled connection is not reused as it closes.
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        Ok(NetClient { client, resolver })
    }
}

/// What the policy refused or cut during one call, oldest first.
#[derive(Debug, Default)]
pub struct PolicyLog(Mutex<Vec<String>>);

impl PolicyLog {
    pub fn record(&self, what: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(what);
    }

    pub fn first(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .cloned()
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
