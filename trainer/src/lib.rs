//! mmsr-trainer: the Qwen2.5-VL policy on tch, multi-turn rollouts with
//! search in the loop, rewards, and GRPO. It knows nothing of wasm: search
//! comes in through [`tools::SearchTools`].

pub mod algo;
pub mod bench;
pub mod data;
pub mod demo;
pub mod eval;
pub mod model;
pub mod parallel;
pub mod policy;
pub mod protocol;
pub mod report;
pub mod reward;
pub mod rollout;
pub mod sft;
pub mod testkit;
pub mod tools;
pub mod train;
