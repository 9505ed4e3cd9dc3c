//! A circuit breaker per tool: after `failure_threshold` consecutive
//! transient failures the tool is skipped (fails fast as `Unavailable`) for
//! `cooldown`; then one probe call decides whether it closes again.

use super::Around;
use super::retry::millis;
use crate::tools::{CallFuture, ToolError};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerPolicy {
    pub failure_threshold: u32,
    #[serde(rename = "cooldown_ms", with = "millis")]
    pub cooldown: Duration,
    /// Whether a 429 counts as a failure. An upstream that rate-limits is
    /// alive; where each call matters more than latency (the eval judge),
    /// waiting out its Retry-After beats failing the calls that follow.
    pub count_rate_limits: bool,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
            count_rate_limits: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight.
    HalfOpen,
}

pub struct Breakers {
    policy: BreakerPolicy,
    states: Mutex<HashMap<String, State>>,
    /// Each tool's last health failure, named when its circuit refuses a
    /// call (the refusal alone would hide why).
    last_failure: Mutex<HashMap<String, String>>,
}

/// Counts against the upstream's health: what retrying is for, and traps.
fn is_health_failure(err: &ToolError, policy: &BreakerPolicy) -> bool {
    match err {
        ToolError::RateLimited { .. } => policy.count_rate_limits,
        ToolError::Trap { .. } => true,
        _ => err.is_transient(),
    }
}

/// Puts a half-open breaker back to open if its probe is dropped unfinished.
struct ProbeGuard<'a> {
    breakers: &'a Breakers,
    tool: &'a str,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.breakers.set(
                self.tool,
                State::Open {
                    until: Instant::now(),
                },
            );
        }
    }
}

impl Breakers {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            states: Mutex::new(HashMap::new()),
            last_failure: Mutex::new(HashMap::new()),
        }
    }

    fn set(&self, tool: &str, state: State) {
        self.states
            .lock()
            .expect("breaker map poisoned")
            .insert(tool.to_string(), state);
    }

    /// Admits the call (`Ok(is_probe)`) or refuses it.
    fn admit(&self, tool: &str) -> Result<bool, ToolError> {
        let mut states = self.states.lock().expect("breaker map poisoned");
        let state = states
            .entry(tool.to_string())
            .or_insert(State::Closed { failures: 0 });
        match *state {
            State::Closed { .. } => Ok(false),
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                Ok(true)
            }
            State::Open { until } => Err(ToolError::Unavailable {
                tool: tool.to_string(),
                reason: format!(
                    "circuit open after {} consecutive failures (the last: {}); next try in {:.1}s",
                    self.policy.failure_threshold,
                    self.last_failure
                        .lock()
                        .expect("breaker map poisoned")
                        .get(tool)
                        .map_or("unknown", String::as_str),
                    until
                        .saturating_duration_since(Instant::now())
                        .as_secs_f64()
                ),
            }),
            State::HalfOpen => Err(ToolError::Unavailable {
                tool: tool.to_string(),
                reason: "circuit half-open; a probe call is in flight".into(),
            }),
        }
    }

    fn record(&self, tool: &str, failure: Option<&ToolError>) {
        let failed = failure.is_some();
        if let Some(err) = failure {
            self.last_failure
                .lock()
                .expect("breaker map poisoned")
                .insert(tool.to_string(), err.to_string());
        }
        let mut states = self.states.lock().expect("breaker map poisoned");
        let state = states
            .entry(tool.to_string())
            .or_insert(State::Closed { failures: 0 });
        let next = match (*state, failed) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 < self.policy.failure_threshold => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (_, true) => {
                tracing::warn!(
                    tool,
                    cooldown_ms = self.policy.cooldown.as_millis() as u64,
                    "circuit opened"
                );
                State::Open {
                    until: Instant::now() + self.policy.cooldown,
                }
            }
        };
        if matches!(*state, State::HalfOpen) && !failed {
            tracing::info!(tool, "circuit closed after a successful probe");
        }
        *state = next;
    }
}

impl Around for Breakers {
    fn around<'a, T: Send + 'a>(
        &'a self,
        tool: &'a str,
        call: impl Fn() -> CallFuture<'a, T> + Send + Sync + 'a,
    ) -> CallFuture<'a, T> {
        Box::pin(async move {
            let probe = self.admit(tool)?;
            let mut guard = ProbeGuard {
                breakers: self,
                tool,
                armed: probe,
            };
            let result = call().await;
            guard.armed = false;
            let failure = result
                .as_ref()
                .err()
                .filter(|e| is_health_failure(e, &self.policy));
            self.record(tool, failure);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Layered;
    use super::*;
    use crate::fakes::ScriptedInvoker;
    use crate::tools::ToolInvoker;

    #[tokio::test]
    async fn opens_fails_fast_then_probes_and_closes() {
        let policy = BreakerPolicy {
            failure_threshold: 3,
            cooldown: Duration::from_millis(100),
            ..BreakerPolicy::default()
        };
        let inv = Layered {
            around: Breakers::new(policy),
            inner: ScriptedInvoker::default(),
        };
        let e500 = ToolError::Upstream {
            status: 500,
            message: "down".into(),
        };
        inv.inner
            .fail_next("t", std::iter::repeat_n(e500.clone(), 4));
        for _ in 0..3 {
            assert_eq!(inv.text_search("t", "q", 1).await.unwrap_err(), e500);
        }
        // Open: refused without calling upstream, naming why.
        match inv.text_search("t", "q", 1).await {
            Err(ToolError::Unavailable { reason, .. }) => assert!(
                reason.contains("(the last: upstream answered 500: down)"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(inv.inner.call_count(), 3);
        // Other tools are unaffected.
        assert!(inv.text_search("other", "q", 1).await.is_ok());
        // After the cooldown one probe goes through; it fails, so it opens again.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(inv.text_search("t", "q", 1).await.unwrap_err(), e500);
        assert!(matches!(
            inv.text_search("t", "q", 1).await,
            Err(ToolError::Unavailable { .. })
        ));
        // Next probe succeeds and closes the circuit.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(inv.text_search("t", "q", 1).await.is_ok());
        assert!(inv.text_search("t", "q", 1).await.is_ok());
    }

    #[tokio::test]
    async fn rate_limits_trip_it_only_where_they_count() {
        for count in [true, false] {
            let inv = Layered {
                around: Breakers::new(BreakerPolicy {
                    failure_threshold: 2,
                    count_rate_limits: count,
                    ..BreakerPolicy::default()
                }),
                inner: ScriptedInvoker::default(),
            };
            let limited = ToolError::RateLimited {
                retry_after_s: Some(1),
            };
            inv.inner.fail_next("t", std::iter::repeat_n(limited, 2));
            for _ in 0..2 {
                assert!(inv.text_search("t", "q", 1).await.is_err());
            }
            assert_eq!(inv.text_search("t", "q", 1).await.is_ok(), !count);
        }
    }

    #[tokio::test]
    async fn permanent_errors_do_not_trip_it() {
        let inv = Layered {
            around: Breakers::new(BreakerPolicy::default()),
            inner: ScriptedInvoker::default(),
        };
        inv.inner.fail_next(
            "t",
            std::iter::repeat_n(ToolError::InvalidInput("bad".into()), 10),
        );
        for _ in 0..10 {
            assert!(matches!(
                inv.text_search("t", "q", 1).await,
                Err(ToolError::InvalidInput(_))
            ));
        }
        assert_eq!(inv.inner.call_count(), 10);
    }
}
