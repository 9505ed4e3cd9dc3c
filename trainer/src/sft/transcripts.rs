//! Scripted trajectories turned into transcripts through the policy itself,
//! so the tokens, image pads and masks are exactly those a rollout makes:
//! the first turn (image + first-turn prompt) opens the session, each
//! scripted turn goes in through `push_assistant` (mask 1), and after a
//! search turn the environment's real reply — the search run through
//! [`SearchTools`] and shown as the rollout shows it — through `push_user`
//! (mask 0).

use super::scripts::TrajectorySource;
use crate::data::Sample;
use crate::policy::{Policy, Segment, Transcript};
use crate::protocol::{Action, parse_action};
use crate::rollout::{Prompts, SearchCall, guarded_search, push_search_result};
use crate::tools::{ImageQuery, SearchTools};
use crate::train::{StopPoint, StopRequest, Stopped};
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// As the first turn tells the model; longer scripts are refused.
    pub max_rounds: usize,
    pub search_concurrency: usize,
    pub tool_timeout: Duration,
    /// Conversations open at once.
    pub chunk: usize,
    pub drop_failed_searches: bool,
    pub drop_ungrounded: bool,
    /// Open with the direct workflow's first turn (answer, no search)
    /// instead of the on-demand one; for direct-answer scripts.
    pub direct_prompt: bool,
    /// Checked between chunks: once requested, the build returns
    /// [`Stopped`] (the searches made are in the tools' cache, if any).
    pub stop: StopRequest,
}

/// What went into the SFT data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataStats {
    pub samples: usize,
    /// Kept trajectories answered at once / with search.
    pub direct: usize,
    pub with_search: usize,
    pub image_searches: usize,
    pub text_searches: usize,
    /// Searches that failed, and trajectories left out for it.
    pub tool_errors: usize,
    pub dropped: usize,
    /// Trajectories whose results did not hold what the script read from
    /// them, and those of them left out.
    pub ungrounded: usize,
    pub dropped_ungrounded: usize,
    /// Mask-1 tokens over the kept transcripts.
    pub response_tokens: usize,
}

pub struct SftData {
    pub transcripts: Vec<Transcript>,
    /// The sample each transcript came from.
    pub sample_index: Vec<usize>,
    /// Whether each transcript answers at once (no search).
    pub direct: Vec<bool>,
    pub stats: DataStats,
}

/// The search a scripted turn asks for, if it is a search turn; the last
/// turn must be the answer and no other may be.
fn check_script(
    sample: &Sample,
    turns: &[String],
    max_rounds: usize,
) -> Result<Vec<Option<SearchCall>>> {
    if turns.is_empty() {
        bail!("{}: empty script", sample.id);
    }
    if turns.len() > max_rounds {
        bail!(
            "{}: script has {} turns, more than rollout.max_rounds = {max_rounds}",
            sample.id,
            turns.len()
        );
    }
    let image = sample
        .images
        .first()
        .with_context(|| format!("{}: no image", sample.id))?;
    turns
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let last = k + 1 == turns.len();
            match (parse_action(t), last) {
                (Some(Action::Answer(_)), true) => Ok(None),
                (Some(Action::ImageSearch), false) => Ok(Some(SearchCall::Image(ImageQuery {
                    bytes: image.clone(),
                    url: sample.image_url.clone(),
                }))),
                (Some(Action::TextSearch(q)), false) => Ok(Some(SearchCall::Text(q))),
                (action, _) => bail!(
                    "{}: scripted turn {k} ({action:?}) — a script is searches, then one answer: {t:?}",
                    sample.id
                ),
            }
        })
        .collect()
}

/// Builds one transcript per sample, with the turns `source` scripts.
#[allow(clippy::too_many_arguments)]
pub fn build_transcripts<P: Policy, T: SearchTools + 'static>(
    policy: &mut P,
    samples: &[Sample],
    source: &dyn TrajectorySource,
    prompts: &Arc<Prompts>,
    tools: &Arc<T>,
    handle: &Handle,
    opts: &BuildOptions,
    on_progress: &dyn Fn(usize),
) -> Result<SftData> {
    let scripts = samples
        .iter()
        .map(|s| source.turns(s))
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(
        opts.chunk > 0 && opts.search_concurrency > 0,
        "chunk and concurrency ≥ 1"
    );
    let calls = samples
        .iter()
        .zip(&scripts)
        .map(|(s, t)| check_script(s, t, opts.max_rounds))
        .collect::<Result<Vec<_>>>()?;
    let mut out = SftData {
        transcripts: Vec::new(),
        sample_index: Vec::new(),
        direct: Vec::new(),
        stats: DataStats {
            samples: samples.len(),
            ..Default::default()
        },
    };
    let idx: Vec<usize> = (0..samples.len()).collect();
    for chunk in idx.chunks(opts.chunk) {
        if opts.stop.is_requested() {
            return Err(Stopped {
                what: "SFT",
                at: StopPoint::Building {
                    done: chunk[0],
                    total: samples.len(),
                },
                checkpoint: None,
            }
            .into());
        }
        let mut sessions = Vec::with_capacity(chunk.len());
        let mut errors = vec![0usize; chunk.len()];
        let mut ungrounded = vec![false; chunk.len()];
        for &i in chunk {
            let s = &samples[i];
            let text = if opts.direct_prompt {
                anyhow::ensure!(
                    scripts[i].len() == 1,
                    "{}: the direct prompt allows no search, but the script has {} turns",
                    s.id,
                    scripts[i].len()
                );
                prompts.direct_first_turn(&s.question)?
            } else {
                prompts.first_turn(&s.question, opts.max_rounds)?
            };
            let image = s.images.first().expect("checked").clone();
            sessions.push(
                policy
                    .open(&[Segment::Image(image), Segment::Text(text)])
                    .with_context(|| format!("{}: opening the conversation", s.id))?,
            );
        }
        let rounds = chunk.iter().map(|&i| scripts[i].len()).max().unwrap_or(0);
        for round in 0..rounds {
            let mut pending = Vec::new();
            for (k, &i) in chunk.iter().enumerate() {
                let (Some(turn), Some(call)) = (scripts[i].get(round), calls[i].get(round)) else {
                    continue;
                };
                policy
                    .push_assistant(&mut sessions[k], turn)
                    .with_context(|| format!("{}: scripted turn {round}", samples[i].id))?;
                if let Some(call) = call {
                    pending.push((k, call.clone()));
                }
            }
            let results: Vec<_> = handle.block_on(
                futures::stream::iter(pending)
                    .map(|(k, call)| {
                        let image = call.is_image();
                        let search = guarded_search(
                            handle,
                            Arc::clone(tools),
                            call,
                            opts.tool_timeout,
                            Arc::clone(prompts),
                        );
                        async move { (k, image, search.await) }
                    })
                    .buffer_unordered(opts.search_concurrency)
                    .collect(),
            );
            for (k, image, obs) in results {
                let i = chunk[k];
                ungrounded[k] |= obs.error.is_none() && !source.grounded(&samples[i], round, &obs);
                out.stats.image_searches += usize::from(image);
                out.stats.text_searches += usize::from(!image);
                errors[k] += push_search_result(
                    policy,
                    &mut sessions[k],
                    prompts,
                    &obs,
                    image,
                    &samples[i].question,
                )
                .with_context(|| format!("{}: search result", samples[i].id))?;
            }
        }
        for (k, &i) in chunk.iter().enumerate() {
            out.stats.tool_errors += errors[k];
            if errors[k] > 0 && opts.drop_failed_searches {
                out.stats.dropped += 1;
                continue;
            }
            out.stats.ungrounded += usize::from(ungrounded[k]);
            if ungrounded[k] && opts.drop_ungrounded {
                out.stats.dropped_ungrounded += 1;
                continue;
            }
            let t = policy.transcript(&sessions[k]).clone();
            out.stats.response_tokens += t.response_len();
            if scripts[i].len() == 1 {
                out.stats.direct += 1;
            } else {
                out.stats.with_search += 1;
            }
            out.transcripts.push(t);
            out.sample_index.push(i);
            out.direct.push(scripts[i].len() == 1);
        }
        on_progress(chunk.last().map_or(0, |&i| i + 1));
    }
    if out.transcripts.is_empty() {
        bail!(
            "no SFT trajectory left of {}: {} dropped for failed searches (is the search backend up?), {} for results that did not hold what the script read",
            samples.len(),
            out.stats.dropped,
            out.stats.dropped_ungrounded
        );
    }
    Ok(out)
}

/// Puts loss weight `w` into `mask` (a transcript's, perhaps widened by
/// [`with_context_mask`]) on the first two tokens of each assistant turn,
/// the turns being the runs of 1 in `assistant`, the mask they were built with.
pub fn weight_turn_openings(mask: &mut [u8], assistant: &[u8], w: u8) {
    // Tokens into the current turn: 0 outside one.
    let mut into = 0;
    for (m, &a) in mask.iter_mut().zip(assistant) {
        into = if a == 1 { into + 1 } else { 0 };
        if (1..=2).contains(&into) {
            *m = w;
        }
    }
}

/// `t` with the loss mask on every token that has a prefix to predict it
/// from, except the ids in `skip` (image placeholders): SFT's
/// `context_loss`.
pub fn with_context_mask(t: &Transcript, skip: &[i64]) -> Transcript {
    let mut out = t.clone();
    for (i, (m, tok)) in out.response_mask.iter_mut().zip(&t.tokens).enumerate() {
        *m = u8::from(i > 0 && !skip.contains(tok));
    }
    out
}
