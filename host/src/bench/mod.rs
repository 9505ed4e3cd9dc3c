//! Host-side benchmarks behind `mmsr-host bench KIND`; each measures its
//! baseline side by side in the same run.

pub mod pipeline;
pub mod tools;
