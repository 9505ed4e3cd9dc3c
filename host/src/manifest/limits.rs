//! Per-tool resource limits, with the host's defaults and ceilings.

use serde::Deserialize;
use std::time::Duration;

/// The largest linear memory any tool may ask for; the pooling allocator's
/// slots are sized for it.
pub const MAX_MEMORY_MIB: u64 = 1024;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory cap; growing past it traps the call.
    pub memory_mib: u64,
    /// Wall time of one call, and the ceiling for every request timeout.
    pub timeout_ms: u64,
    /// CPU budget of one call: time the guest's code runs, counted in epoch
    /// ticks (a guest waiting on I/O or for a core is not charged). At most
    /// `timeout_ms`, which it defaults to.
    pub cpu_ms: Option<u64>,
    /// Largest response body the host passes to the tool.
    pub response_bytes: u64,
    /// Largest request body the host accepts from the tool.
    pub request_bytes: u64,
    /// Calls of this tool running at once; more wait (up to `timeout_ms`).
    pub concurrency: u32,
    /// For the rate-limit layer over the invoker; `None` means unlimited.
    pub requests_per_second: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 64,
            timeout_ms: 10_000,
            cpu_ms: None,
            response_bytes: 4 << 20,
            request_bytes: 1 << 20,
            concurrency: 16,
            requests_per_second: None,
        }
    }
}

impl Limits {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn cpu_budget(&self) -> Duration {
        Duration::from_millis(self.cpu_ms.unwrap_or(self.timeout_ms))
    }

    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize) << 20
    }

    /// Checks ranges; `Err((field, why))`.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let range = |field, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err((field, format!("{v} is outside {lo}..={hi}")))
            }
        };
        range("limits.memory_mib", self.memory_mib, 1, MAX_MEMORY_MIB)?;
        range("limits.timeout_ms", self.timeout_ms, 1, 600_000)?;
        if let Some(cpu) = self.cpu_ms {
            // Past the wall time it could never fire.
            range("limits.cpu_ms", cpu, 1, self.timeout_ms)?;
        }
        range("limits.response_bytes", self.response_bytes, 1, 1 << 30)?;
        range("limits.request_bytes", self.request_bytes, 1, 256 << 20)?;
        range("limits.concurrency", self.concurrency as u64, 1, 4096)?;
        if let Some(rps) = self.requests_per_second
            && !(rps.is_finite() && rps > 0.0)
        {
            return Err((
                "limits.requests_per_second",
                format!("{rps} must be a positive number"),
            ));
        }
        Ok(())
    }
}
