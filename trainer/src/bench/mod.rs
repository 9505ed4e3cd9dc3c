//! Model-side benchmarks behind `mmsr-host bench KIND`; each measures its
//! baseline side by side in the same run.

pub mod generate;
pub mod rollout;
