//! DNS for the pooled client. The hook resolves a name here and checks the
//! answer against the tool's policy; the client's connector then gets that
//! same answer, never a fresh lookup, so a name cannot re-resolve (rebind) to
//! another address between the check and the connect. Answers are kept for
//! [`TTL`]; a name no hook looked up is refused by the connector.
//!
//! Static answers ([`StaticHosts`], like `/etc/hosts`) are served before DNS
//! and checked like any other answer; tests use them to point a listed name
//! at a private address.
//!
//! Limit: a request checked just before its name's answer expires, and
//! connecting just after another request re-resolved it, connects to the new
//! answer, which that other request checked under its own tool's policy.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is reused by lookups.
pub const TTL: Duration = Duration::from_secs(30);
/// The connector accepts an answer this much longer, for requests checked near the end.
const CONNECT_GRACE: Duration = Duration::from_secs(60);

/// Fixed answers by lower-case host name, served instead of DNS.
pub type StaticHosts = HashMap<String, Vec<IpAddr>>;

#[derive(Default)]
pub struct CheckedResolver {
    answers: Mutex<HashMap<String, (Instant, Vec<SocketAddr>)>>,
    fixed: StaticHosts,
}

/// The connector asked for a name the policy did not check.
#[derive(Debug, thiserror::Error)]
#[error("{0} was not checked by the outbound policy")]
pub struct UncheckedName(pub String);

impl CheckedResolver {
    pub fn with_static(fixed: StaticHosts) -> Self {
        CheckedResolver {
            answers: Mutex::default(),
            fixed: fixed
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        }
    }

    /// Resolves `host:port`, reusing an answer younger than [`TTL`]. IP literals skip DNS.
    pub async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let key = host.to_ascii_lowercase();
        if let Some(ips) = self.fixed.get(&key) {
            let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
            self.remember(key, addrs.clone());
            return Ok(addrs);
        }
        if let Some(addrs) = self.get(&key, TTL) {
            return Ok(addrs
                .into_iter()
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect());
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        self.remember(key, addrs.clone());
        Ok(addrs)
    }

    /// Keeps a checked answer for the connector.
    fn remember(&self, key: String, addrs: Vec<SocketAddr>) {
        let mut map = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (at, _)| at.elapsed() < TTL + CONNECT_GRACE);
        map.insert(key, (Instant::now(), addrs));
    }

    fn get(&self, key: &str, max_age: Duration) -> Option<Vec<SocketAddr>> {
        let map = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < max_age)
            .map(|(_, a)| a.clone())
    }
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let answer = self.get(&name.as_str().to_ascii_lowercase(), TTL + CONNECT_GRACE);
        let name = name.as_str().to_string();
        Box::pin(async move {
            match answer {
                Some(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                None => Err(Box::new(UncheckedName(name)) as _),
            }
        })
    }
}
