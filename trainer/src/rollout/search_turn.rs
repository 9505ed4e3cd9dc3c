//! The environment's side of a search turn, shared by every driver of a
//! conversation (the rollout engine, the eval workflows, SFT data): running
//! a search so that it always answers, and showing its result to the model
//! as the `<information>…</information>` user turn.

use super::prompts::Prompts;
use crate::policy::{Policy, Segment};
use crate::protocol::{INFORMATION_CLOSE, INFORMATION_OPEN};
use crate::tools::{ImageQuery, ObservationPart, SearchTools, ToolObservation};
use anyhow::Result;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// A search the environment carries out for the model.
#[derive(Clone, Debug)]
pub enum SearchCall {
    /// `<search><img></search>`: the conversation's input image.
    Image(ImageQuery),
    /// `<text_search>query</text_search>`.
    Text(String),
}

impl SearchCall {
    pub fn is_image(&self) -> bool {
        matches!(self, SearchCall::Image(_))
    }
}

/// Starts `call` on `handle` at once and returns its guarded result: it
/// always answers, even if the tool panics or stalls: a crash or a timeout
/// (counted from the first poll) becomes an error observation worded by the
/// `search_error` prompt.
pub fn guarded_search<T: SearchTools + 'static>(
    handle: &Handle,
    tools: Arc<T>,
    call: SearchCall,
    timeout: Duration,
    prompts: Arc<Prompts>,
) -> impl Future<Output = ToolObservation> + Send + 'static {
    // A task of its own, so a panicking tool is a JoinError, not our panic.
    let work = handle.spawn(async move {
        match call {
            SearchCall::Image(query) => tools.image_search(&query).await,
            SearchCall::Text(q) => tools.text_search(&q).await,
        }
    });
    async move {
        let failed = |msg: String| {
            let text = prompts.search_error(&msg).unwrap_or(msg.clone());
            ToolObservation {
                parts: vec![ObservationPart::Text(text)],
                error: Some(msg),
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(obs)) => obs,
            Ok(Err(e)) => failed(format!("search tool crashed: {e}")),
            Err(_) => failed(format!(
                "search timed out after {:.0} s",
                timeout.as_secs_f64()
            )),
        }
    }
}

/// `<information>…</information>`, then the follow-up instruction.
pub fn information_turn(parts: &[ObservationPart], follow: &str) -> Vec<Segment> {
    let mut segs = vec![Segment::Text(format!("{INFORMATION_OPEN}\n"))];
    for p in parts {
        segs.push(match p {
            ObservationPart::Text(t) => Segment::Text(t.clone()),
            ObservationPart::Image(b) => Segment::Image(b.clone()),
        });
    }
    segs.push(Segment::Text(format!("\n{INFORMATION_CLOSE}\n\n{follow}")));
    segs
}

/// Shows a search's result to the model as a new user turn: the
/// observation, the original question and the follow-up instruction for
/// this kind of search. Returns the tool errors it counts (an error
/// observation, and a result the policy refuses, e.g. a corrupt thumbnail,
/// which is replaced by an error message so the model still hears what
/// happened).
pub fn push_search_result<P: Policy>(
    policy: &mut P,
    session: &mut P::Session,
    prompts: &Prompts,
    obs: &ToolObservation,
    image: bool,
    question: &str,
) -> Result<usize> {
    let follow = prompts.after_search(image, question)?;
    let mut errors = usize::from(obs.error.is_some());
    if let Err(err) = policy.push_user(session, &information_turn(&obs.parts, &follow)) {
        tracing::warn!(error = %format!("{err:#}"), "search result rejected by the policy; sending the error instead");
        errors += 1;
        let text = prompts.search_error(&format!("{err:#}"))?;
        policy.push_user(
            session,
            &information_turn(&[ObservationPart::Text(text)], &follow),
        )?;
    }
    Ok(errors)
}
