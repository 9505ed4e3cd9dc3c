//! What every bench run feeds the engine: requests, fake tools and the
//! rollout settings.

use super::RolloutBenchOptions;
use crate::rollout::{RolloutConfig, RolloutMode, RolloutRequest};
use crate::tools::{FakeSearchTools, FakeToolCall, ObservationPart, ToolObservation};
use std::sync::Arc;
use std::time::Duration;

pub(super) fn png(seed: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_pixel(8, 6, image::Rgb([seed, 90, 200]))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("in-memory PNG");
    out
}

pub(super) fn requests(prompts: usize, n: usize) -> Vec<RolloutRequest> {
    (0..prompts)
        .flat_map(|i| {
            std::iter::repeat_n(
                RolloutRequest {
                    id: format!("bench#{i}"),
                    question: format!("What is the landmark in picture {i}?"),
                    image: png(i as u8),
                    image_url: None,
                },
                n,
            )
        })
        .collect()
}

pub(super) fn fake_tools(latency: Duration) -> Arc<FakeSearchTools> {
    Arc::new(fake_tools_of(latency))
}

pub(super) fn fake_tools_of(latency: Duration) -> FakeSearchTools {
    FakeSearchTools::new(latency, |call| match call {
        FakeToolCall::Image { .. } => ToolObservation {
            parts: vec![
                ObservationPart::Text("1. A landmark - Example\n".into()),
                ObservationPart::Image(png(1)),
            ],
            error: None,
        },
        FakeToolCall::Text(q) => ToolObservation::text(format!("Results for {q}.")),
    })
}

pub(super) fn rollout_cfg(o: &RolloutBenchOptions, mode: RolloutMode) -> RolloutConfig {
    RolloutConfig {
        n: o.n,
        batch_prompts: o.prompts,
        mode,
        max_turn_tokens: o.max_turn_tokens,
        max_response_tokens: 3 * o.max_turn_tokens,
        max_batch: o.max_batch,
        batch_linger_ms: o.batch_linger_ms,
        join_linger_steps: o.join_linger_steps,
        ..RolloutConfig::default()
    }
}
