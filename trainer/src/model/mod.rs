//! Qwen2.5-VL on tch: HF config and weights in and out, the tokenizer and
//! chat template, the image processor, batched KV-cache generation, and the
//! training forward. [`QwenVlPolicy`] implements the rollout engine's and
//! the trainer's contracts (`crate::policy`).
//!
//! ```text
//! config     config.json (flat and nested layouts)
//! weights    safetensors in/out, seeded random init
//! layers     Linear (+LoRA), RMSNorm, SwiGLU
//! lora       adapters, merged on export
//! vision     the vision tower and patch merger
//! rope       3-D M-RoPE positions and tables
//! text       the Qwen2 decoder with a KV buffer
//! qwen       both together
//! image      the image processor
//! tokenizer  tokenizer.json and the chat template
//! sampling   greedy / temperature / top-k / top-p on the device
//! generate   batched KV-cache generation
//! scoring    training forward, gradient checkpointing
//! policy     QwenVlPolicy: sessions, Policy + TrainablePolicy
//! ```

pub mod config;
pub mod continuous;
pub mod generate;
pub mod image;
pub mod layers;
pub mod lora;
pub mod policy;
pub mod qwen;
pub mod rope;
pub mod sampling;
pub mod scoring;
pub mod text;
pub mod tokenizer;
pub mod vision;
pub mod weights;

pub use config::QwenVlConfig;
pub use image::{ImageProcessor, ProcessedImage};
pub use lora::LoraOptions;
pub use policy::{PolicyOptions, QwenSession, QwenVlPolicy};
pub use qwen::{QwenVl, VisionInput};
