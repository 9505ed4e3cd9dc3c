//! Multi-turn rollouts with search in the loop, following the paper's
//! protocol: `<reason>` then one action per turn; searches answered with
//! `<information>…</information>` user turns.

mod config;
mod engine;
mod prompts;
mod search_turn;
mod trajectory;

pub use config::{RolloutConfig, RolloutMode};
pub(crate) use engine::pick_sessions;
pub use engine::{RolloutEngine, mix};
pub use prompts::Prompts;
pub use search_turn::{SearchCall, guarded_search, information_turn, push_search_result};
pub use trajectory::{
    EndReason, RolloutRequest, RolloutStats, Trajectory, TurnRecord, check_transcript,
};

#[cfg(test)]
mod tests;
