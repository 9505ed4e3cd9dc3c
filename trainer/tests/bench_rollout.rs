//! `bench rollout` at a small size on the tiny Qwen2.5-VL: both modes see
//! the forced search shape, and the GRPO step here and in PyTorch
//! (tests/python/grpo_step.py, transformers' Qwen2.5-VL) update the weights
//! alike from the same start: the baseline is the same computation, not
//! just a similar one.

use mmsr_trainer::bench::rollout::{RolloutBenchOptions, run};
use std::time::Duration;

#[test]
fn small_bench_runs_and_the_pytorch_twin_computes_the_same_step() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let opts = RolloutBenchOptions {
        prompts: 4,
        n: 4,
        max_turn_tokens: 16,
        max_batch: 4,
        tool_latency: Duration::from_millis(30),
        sched_step: Duration::from_micros(500),
        sched_reason_tokens: 24,
        rollout_repeats: 1,
        grpo_trajectories: 8,
        // Four optimizer steps with a large lr: later mini-batches are
        // off-policy, so ratios, clipping and the KL term all count.
        ppo_epochs: 2,
        mini_batch: 4,
        micro_batch: 3,
        lr: 1e-2,
        grpo_repeats: 1,
        ..RolloutBenchOptions::default()
    };
    let r = run(&opts, rt.handle()).unwrap();
    // RAG: an image and a text search per trajectory; on demand: 0, 1, 1, 2.
    assert_eq!(
        (r.rag.async_run.tool_calls, r.rag.sync_run.tool_calls),
        (32, 32)
    );
    assert_eq!(r.on_demand.sync_run.tool_calls, 16);
    // Continuous batching runs the same searches, one decode step a call.
    for c in [&r.rag, &r.on_demand] {
        assert_eq!(c.continuous_run.tool_calls, c.sync_run.tool_calls);
        assert!(
            c.continuous_run.generate_calls > c.sync_run.generate_calls,
            "{c:?}"
        );
        assert!(c.continuous_run.overlapped_calls > 0, "{c:?}");
    }
    // The same shapes with turns of random length: the same searches, and
    // turns that end before the budget (the fixed batch's all reach it).
    let varied = r.on_demand_varied.as_ref().expect("stop_chance > 0");
    assert_eq!(
        (varied.async_run.tool_calls, varied.sync_run.tool_calls),
        (16, 16)
    );
    for m in [&varied.async_run, &varied.sync_run] {
        assert!(
            m.generated_tokens < r.on_demand.sync_run.generated_tokens * 4 / 5,
            "{m:?} against {:?}",
            r.on_demand.sync_run
        );
    }
    assert_eq!(r.rag.sync_run.overlapped_calls, 0);
    assert!(
        r.rag.async_run.overlapped_calls > 0,
        "{:?}",
        r.rag.async_run
    );
    assert!(
        r.sync_ms >= 2.0 * 30.0,
        "two rounds of searches: {}",
        r.sync_ms
    );
    // The scheduler alone: the same scripted turns in each of its runs.
    let sc = r.scheduler.as_ref().expect("sched_step > 0");
    for m in [&sc.async_run, &sc.async_early, &sc.continuous] {
        assert_eq!(
            (m.tool_calls, m.generated_tokens),
            (sc.sync_run.tool_calls, sc.sync_run.generated_tokens)
        );
    }
    assert_eq!(sc.sync_run.tool_calls, 16);
    // No schedule beats the longest trajectory's own chain, with tools of
    // fixed or of varying latency.
    let jittered = r.scheduler_varied_tools.as_ref().expect("jitter > 0");
    assert!(jittered.tool_jitter > 0.0);
    for sc in [sc, jittered] {
        for m in [&sc.sync_run, &sc.async_run, &sc.continuous] {
            assert!(m.wall_ms >= sc.critical_path_ms * 0.99, "{sc:?}");
            assert_eq!(m.tool_calls, 16);
        }
    }
    assert!(
        jittered.critical_path_ms != sc.critical_path_ms,
        "the latencies vary: {jittered:?}"
    );
    assert!(sc.mean_turn_tokens > 8.0, "{sc:?}");
    assert!(r.grpo_step_ms > 0.0 && r.torch_grpo_step_ms > 0.0);
    assert!(r.grpo_response_tokens > 0);
    // Adam's first steps move each weight by about ±lr whatever its
    // gradient's size, so a near-zero gradient whose sign differs between
    // kernels moves one weight by up to 2·lr per step: bound the whole
    // update instead, and each weight by the four steps.
    assert!(
        r.grpo_update_rel_diff < 0.05,
        "PyTorch's update differs: {} (relative)",
        r.grpo_update_rel_diff
    );
    assert!(
        r.grpo_max_weight_diff <= 8.0 * opts.lr,
        "a weight moved differently by {}",
        r.grpo_max_weight_diff
    );
    assert!(r.policy.contains("Qwen2.5-VL"), "{}", r.policy);
    let json = serde_json::to_value(&r).unwrap();
    for key in ["async_ms", "sync_ms", "async_speedup", "grpo_step_ratio"] {
        assert!(
            json[key].as_f64().is_some_and(f64::is_finite),
            "{key}: {json}"
        );
    }
}
