//! GRPO as pure functions: group advantages, the clipped objective with KL
//! and entropy terms, AdamW with gradient clipping, and the LR schedule.

mod advantage;
mod aggregate;
mod loss;
mod objective;
mod optim;
mod schedule;

pub use advantage::{group_advantages, informative_groups, source_balance_weights};
pub use aggregate::{LossAgg, token_weights};
pub use loss::{clipped_policy_loss, low_var_kl, masked_mean, masked_sum_over};
pub use objective::{MicroBatch, ObjectiveConfig, ObjectiveTerms, grpo_objective};
pub use optim::{AdamW, AdamWConfig, clip_grad_norm};
pub use schedule::{Decay, LrSchedule};
