//! Multi-turn GRPO training: the config, the step loop (rollouts with search
//! in the loop → rewards → group advantages → the clipped update), the run
//! dir's metrics and TensorBoard files, checkpoints, and export.

mod batch;
pub mod checkpoint;
pub mod config;
pub mod disk;
mod export;
pub mod metrics;
mod policy_factory;
pub mod rollout_log;
mod stop;
pub mod tensorboard;
mod trainer;
mod update;
pub mod validation;

pub use config::{
    ActorConfig, AlgoConfig, DataConfig, LoraConfig, ModelConfig, ModelKind, RunConfig,
    TrainConfig, ValConfig, apply_override, from_value,
};
pub use export::{ensure_empty_out, export_checkpoint, resolve_best, resolve_checkpoint};
pub use metrics::{MetricsLog, StepMetrics};
pub use policy_factory::{
    BIGRAM_IM_END_BIAS, BIGRAM_MODEL_TYPE, PolicyInit, PolicyVisitor, device, dtype,
    policy_options, resolve_kind, with_policy,
};
pub use stop::{RunControl, StopPoint, StopRequest, Stopped};
pub use trainer::{
    CHECKPOINTS_DIR, CONFIG_FILE, METRICS_FILE, RunSummary, TENSORBOARD_DIR, Trainer, load_samples,
};
pub use update::{UpdateSettings, UpdateStats, grpo_update};
pub use validation::{VAL_METRICS_FILE, VAL_RESULTS_DIR, ValMetrics, Validator, val_results_file};
