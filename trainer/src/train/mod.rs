//! Multi-turn GRPO training: the config, the step loop, checkpoints and the
//! run dir's logs.

pub mod config;

pub use config::{
    ActorConfig, AlgoConfig, DataConfig, LoraConfig, ModelConfig, ModelKind, RunConfig, TrainConfig,
};
