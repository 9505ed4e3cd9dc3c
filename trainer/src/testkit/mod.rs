//! Test doubles for the rollout engine and the trainer, public so the host's
//! tests and benchmarks can use them: a scripted policy whose turns are
//! fixed text, a tiny trainable bigram language model, and directory trees
//! as data.

mod bigram;
mod chat;
mod files;
mod scripted;

pub use bigram::BigramPolicy;
pub use chat::{ChatTokens, IM_END, IM_START, IMAGE_PAD, VISION_END, VISION_START};
pub use files::files_under;
pub use scripted::{ScriptedPolicy, ScriptedSession};
