//! The LLM judge's transport: an OpenAI-compatible chat endpoint behind the
//! tools' own retry and circuit breaker. What the judge is asked and how its
//! verdict is read live in the trainer (`eval::judge`); this is the wire.

use crate::net::error_chain;
use crate::reliability::{Around, BreakerPolicy, Breakers, Retry, RetryPolicy};
use crate::tools::ToolError;
use crate::wire::openai::{ChatMessage, ChatRequest};
use mmsr_trainer::eval::config::JudgeConfig;
use mmsr_trainer::eval::judge::{
    JUDGE_SYSTEM, Judge, JudgeFuture, JudgeItem, judge_prompt, parse_verdict,
};

/// The LLM judge over an OpenAI-compatible `POST …/v1/chat/completions`,
/// behind the tools' retry and circuit breaker: transient failures are
/// retried, and after a run of them the judge is skipped for a while.
pub struct OpenAiJudge {
    client: reqwest::Client,
    endpoint: String,
    model: String,
    key: Option<String>,
    timeout_s: u64,
    retry: Retry,
    breaker: Breakers,
}

impl OpenAiJudge {
    pub fn new(cfg: &JudgeConfig) -> anyhow::Result<Self> {
        let base = cfg.url.trim_end_matches('/');
        let endpoint = if base.ends_with("/chat/completions") {
            base.to_string()
        } else if base.ends_with("/v1") {
            format!("{base}/chat/completions")
        } else {
            format!("{base}/v1/chat/completions")
        };
        let timeout_s = cfg.timeout_s.max(1);
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(timeout_s))
                // Followed, a POST would turn into a GET and fail obscurely.
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            endpoint,
            model: cfg.model.clone(),
            key: (!cfg.api_key_env.is_empty())
                .then(|| std::env::var(&cfg.api_key_env).ok())
                .flatten()
                .filter(|k| !k.is_empty()),
            timeout_s,
            retry: Retry::new(RetryPolicy {
                max_attempts: cfg.max_attempts.max(1),
                ..RetryPolicy::default()
            }),
            breaker: Breakers::new(BreakerPolicy {
                failure_threshold: cfg.breaker_failures.max(1),
                cooldown: std::time::Duration::from_secs(cfg.breaker_cooldown_s),
                // A rate-limited judge is alive: its questions wait, not fail.
                count_rate_limits: false,
            }),
        })
    }

    /// One attempt, its failure sorted as the retry and breaker read it.
    async fn ask_once(&self, item: &JudgeItem) -> Result<bool, ToolError> {
        let request = ChatRequest {
            model: self.model.clone(),
            messages: vec![
                ChatMessage {
                    role: "system".into(),
                    content: JUDGE_SYSTEM.into(),
                },
                ChatMessage {
                    role: "user".into(),
                    content: judge_prompt(item),
                },
            ],
            max_tokens: Some(8),
            temperature: Some(0.0),
        };
        let mut call = self.client.post(&self.endpoint).json(&request);
        if let Some(key) = &self.key {
            call = call.bearer_auth(key);
        }
        let reply = call.send().await.map_err(|e| self.transport_error(&e))?;
        let status = reply.status();
        let retry_after_s = reply
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after_secs);
        let location = reply
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nowhere")
            .to_string();
        let body = read_capped(reply, MAX_JUDGE_REPLY, |e| self.transport_error(e)).await?;
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(ToolError::RateLimited { retry_after_s });
        }
        if status.is_redirection() {
            return Err(ToolError::Upstream {
                status: status.as_u16(),
                message: format!(
                    "redirects to {location}; set eval.judge.url to the address it names"
                ),
            });
        }
        if !status.is_success() {
            return Err(ToolError::Upstream {
                status: status.as_u16(),
                message: body.chars().take(200).collect(),
            });
        }
        // Read leniently: compatible servers differ in the other fields.
        let malformed = |m: &str| ToolError::MalformedResponse(m.to_string());
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|_| malformed("the judge's reply is not JSON"))?;
        let content = json
            .pointer("/choices/0/message/content")
            .and_then(|c| c.as_str())
            .ok_or_else(|| malformed("the judge's reply has no choices[0].message.content"))?;
        parse_verdict(content).map_err(|e| malformed(&e.to_string()))
    }

    fn transport_error(&self, e: &reqwest::Error) -> ToolError {
        if e.is_timeout() {
            ToolError::Timeout(format!("no whole reply within {} s", self.timeout_s))
        } else {
            ToolError::Upstream {
                status: 0,
                message: error_chain(e),
            }
        }
    }

    async fn ask(&self, item: &JudgeItem) -> anyhow::Result<bool> {
        self.retry
            .around("judge", || {
                self.breaker
                    .around("judge", || Box::pin(self.ask_once(item)))
            })
            .await
            .map_err(|e| anyhow::anyhow!("judge {}: {e}", self.endpoint))
    }
}

/// `Retry-After` as seconds from now: delta-seconds or an HTTP-date.
fn retry_after_secs(value: &str) -> Option<u32> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurd wait saturates; the retry policy then refuses it.
        return Some(value.parse::<u32>().unwrap_or(u32::MAX));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Some(u32::try_from(wait.as_secs_f64().ceil() as u64).unwrap_or(u32::MAX))
}

/// A verdict is one word; a reply past this is not a judge's.
const MAX_JUDGE_REPLY: usize = 1 << 20;

/// The reply's body as text, refused once it passes `cap` bytes (a hostile
/// or broken endpoint could otherwise fill memory within the timeout).
async fn read_capped(
    mut reply: reqwest::Response,
    cap: usize,
    transport: impl Fn(&reqwest::Error) -> ToolError,
) -> Result<String, ToolError> {
    let mut body = Vec::new();
    while let Some(chunk) = reply.chunk().await.map_err(|e| transport(&e))? {
        if body.len() + chunk.len() > cap {
            return Err(ToolError::MalformedResponse(format!(
                "the judge's reply is over {cap} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

impl Judge for OpenAiJudge {
    fn judge<'a>(&'a self, item: &'a JudgeItem) -> JudgeFuture<'a> {
        Box::pin(self.ask(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A judge endpoint on loopback: CORRECT when the prediction line is one
    /// of the gold lines; a 500 for the prediction "boom", 2 MiB of spaces
    /// for "flood", no answer ever for "hang", a 308 for "moved", a 429 for
    /// "… (throttled)" always, and for "Brun (flaky)" a 503
    /// on its first two calls, for "Brun (limited)" a 429 with Retry-After 1
    /// on its first.
    async fn judge_server() -> (String, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let calls = Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::Json<serde_json::Value>| {
                    let log = Arc::clone(&log);
                    let calls = Arc::clone(&calls);
                    async move {
                        let user = body["messages"][1]["content"]
                            .as_str()
                            .unwrap_or("")
                            .to_string();
                        let mut entry = body.0.clone();
                        entry["auth"] = headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string())
                            .into();
                        log.lock().unwrap().push(entry);
                        let pred = user
                            .lines()
                            .find_map(|l| l.strip_prefix("Prediction: "))
                            .unwrap_or("");
                        if pred == "boom" {
                            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down")
                                .into_response();
                        }
                        if pred == "flood" {
                            return " ".repeat(2 * MAX_JUDGE_REPLY).into_response();
                        }
                        if pred == "moved" {
                            return (
                                axum::http::StatusCode::PERMANENT_REDIRECT,
                                [(axum::http::header::LOCATION, "http://elsewhere.example/v1")],
                            )
                                .into_response();
                        }
                        if pred == "hang" {
                            std::future::pending::<()>().await;
                        }
                        let call = {
                            let mut calls = calls.lock().unwrap();
                            let n = calls.entry(pred.to_string()).or_default();
                            *n += 1;
                            *n
                        };
                        if pred.ends_with("(flaky)") && call <= 2 {
                            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy")
                                .into_response();
                        }
                        if pred.ends_with("(throttled)") {
                            return (
                                axum::http::StatusCode::TOO_MANY_REQUESTS,
                                [(axum::http::header::RETRY_AFTER, "0")],
                                "slow down",
                            )
                                .into_response();
                        }
                        if pred.ends_with("(limited)") && call == 1 {
                            return (
                                axum::http::StatusCode::TOO_MANY_REQUESTS,
                                [(axum::http::header::RETRY_AFTER, "1")],
                                "slow down",
                            )
                                .into_response();
                        }
                        let pred = pred.split(" (").next().unwrap_or(pred);
                        let ok = user.lines().any(|l| l.strip_prefix("- ") == Some(pred));
                        let verdict = if ok { "CORRECT" } else { "INCORRECT" };
                        axum::Json(serde_json::json!({
                            "choices": [{"message": {"role": "assistant", "content": verdict}}]
                        }))
                        .into_response()
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), seen)
    }

    use axum::response::IntoResponse;
    use mmsr_trainer::eval::judge::judge_all;
    use mmsr_trainer::eval::metrics::QuestionResult;
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_judge_speaks_openai_chat_and_reads_the_verdict() {
        let (url, seen) = judge_server().await;
        // Any set variable serves as the key's source (no env writes in tests).
        let key = std::env::var("PATH").unwrap();
        let judge = OpenAiJudge::new(&JudgeConfig {
            url: url.clone(),
            model: "judge-1".into(),
            api_key_env: "PATH".into(),
            ..Default::default()
        })
        .unwrap();
        let item = |answer: &str| JudgeItem {
            question: "Who founded Vorlak?".into(),
            golds: vec!["Ada Brun".into(), "Brun".into()],
            answer: answer.into(),
        };
        assert!(judge.judge(&item("Brun")).await.unwrap());
        assert!(!judge.judge(&item("Carl")).await.unwrap());
        let err = format!("{:#}", judge.judge(&item("boom")).await.unwrap_err());
        assert!(err.contains("500") && err.contains("down"), "{err}");
        let err = format!("{:#}", judge.judge(&item("flood")).await.unwrap_err());
        assert!(err.contains("the judge's reply is over"), "{err}");
        let first = seen.lock().unwrap()[0].clone();
        assert_eq!(first["model"], "judge-1");
        assert_eq!(first["messages"][0]["content"], JUDGE_SYSTEM);
        assert_eq!(first["temperature"], 0.0);
        assert_eq!(first["auth"], format!("Bearer {key}"));
        // The endpoint path is added to a base URL, and an unreachable judge
        // is an error naming it, not a verdict.
        for (given, want) in [
            ("http://h:1", "http://h:1/v1/chat/completions"),
            ("http://h:1/v1/", "http://h:1/v1/chat/completions"),
            (
                "http://h:1/x/chat/completions",
                "http://h:1/x/chat/completions",
            ),
        ] {
            let j = OpenAiJudge::new(&JudgeConfig {
                url: given.into(),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(j.endpoint, want);
        }
        let gone = OpenAiJudge::new(&JudgeConfig {
            url: "http://127.0.0.1:9".into(),
            timeout_s: 2,
            ..Default::default()
        })
        .unwrap();
        let err = format!("{:#}", gone.judge(&item("Brun")).await.unwrap_err());
        assert!(err.contains("127.0.0.1:9"), "{err}");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after_secs(" 7 "), Some(7));
        assert_eq!(retry_after_secs("99999999999"), Some(u32::MAX));
        let later = std::time::SystemTime::now() + Duration::from_secs(90);
        let s = retry_after_secs(&httpdate::fmt_http_date(later)).unwrap();
        assert!((88..=90).contains(&s), "{s}");
        assert_eq!(retry_after_secs("Mon, 01 Jan 2001 00:00:00 GMT"), Some(0));
        assert_eq!(retry_after_secs("soon"), None);
    }

    /// Questions `q0…` with these answers and one gold.
    fn questions(answers: &[&str], gold: &str) -> Vec<QuestionResult> {
        answers
            .iter()
            .enumerate()
            .map(|(i, answer)| QuestionResult {
                id: format!("q{i}"),
                question: "Q?".into(),
                answer: Some(answer.to_string()),
                golds: vec![gold.into()],
                ..Default::default()
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flaky_judge_is_retried_and_a_dead_one_costs_one_timeout() {
        let (url, seen) = judge_server().await;
        let judge = OpenAiJudge::new(&JudgeConfig {
            url,
            model: "judge-1".into(),
            timeout_s: 1,
            ..Default::default()
        })
        .unwrap();
        let item = |answer: &str| JudgeItem {
            question: "Who founded Vorlak?".into(),
            golds: vec!["Brun".into()],
            answer: answer.into(),
        };
        // Two 503s, then the verdict: three attempts, the default.
        assert!(judge.judge(&item("Brun (flaky)")).await.unwrap());
        // A 429 is waited out for its Retry-After.
        let start = Instant::now();
        assert!(judge.judge(&item("Brun (limited)")).await.unwrap());
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert_eq!(seen.lock().unwrap().len(), 5);
        // A 500 is retried too, and its text kept.
        let err = format!("{:#}", judge.judge(&item("boom")).await.unwrap_err());
        assert!(err.contains("500") && err.contains("down"), "{err}");
        assert_eq!(seen.lock().unwrap().len(), 8);
        // A redirect is named, not followed (as a GET) nor retried.
        let err = format!("{:#}", judge.judge(&item("moved")).await.unwrap_err());
        assert!(
            err.contains("308") && err.contains("redirects to http://elsewhere.example/v1"),
            "{err}"
        );
        assert_eq!(seen.lock().unwrap().len(), 9);

        // A judge that keeps rate-limiting is alive: its circuit stays
        // closed, and the question after those it refused is judged.
        let (url, seen) = judge_server().await;
        let judge = OpenAiJudge::new(&JudgeConfig {
            url,
            model: "judge-1".into(),
            breaker_failures: 2,
            ..Default::default()
        })
        .unwrap();
        let mut results = questions(&["Brun (throttled)", "Brun (throttled)", "Brun"], "Brun");
        let stats = judge_all(&mut results, &judge, 1).await;
        assert_eq!(stats.judged, 1, "{:?}", stats.failed);
        assert!(
            stats
                .failed
                .iter()
                .all(|(_, why)| why.contains("rate limited"))
        );
        assert_eq!(results[2].judge, Some(true));
        assert_eq!(seen.lock().unwrap().len(), 2 * 3 + 1);

        // A judge that never answers: the first wave of calls times out,
        // the breaker opens, and the other questions fail at once, named.
        let (url, seen) = judge_server().await;
        let judge = OpenAiJudge::new(&JudgeConfig {
            url,
            model: "judge-1".into(),
            timeout_s: 1,
            concurrency: 4,
            breaker_failures: 3,
            ..Default::default()
        })
        .unwrap();
        let mut results = questions(&["hang"; 40], "x");
        let start = Instant::now();
        let stats = judge_all(&mut results, &judge, 4).await;
        let took = start.elapsed();
        assert_eq!(stats.failed.len(), 40);
        assert!(results.iter().all(|r| r.judge.is_none()));
        let calls = seen.lock().unwrap().len();
        // Without the breaker: 40 questions × 3 attempts, ten waves of 3 s.
        assert!(calls <= 8, "{calls} calls reached a dead judge");
        assert!(took < Duration::from_secs(8), "{took:?}");
        // Each names the time-out behind the open circuit.
        for (id, why) in &stats.failed {
            assert!(
                why.contains("circuit open") && why.contains("no whole reply within 1 s"),
                "{id}: {why}"
            );
        }
    }
}
