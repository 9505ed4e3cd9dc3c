//! The console table of `mmsr-host bench rollout`.

use super::RolloutBenchReport;
use super::modes::{ModeComparison, ModeRun};
use super::scheduler::SchedulerRuns;

pub fn print_table(r: &RolloutBenchReport) {
    println!(
        "rollout batch: {} trajectories of the {}, {} on {}, tools {:.0} ms, ≤{} sessions per generation call, async lingers {} ms for sibling results, continuous joiners {} steps (best of runs)",
        r.trajectories,
        r.policy,
        r.dtype,
        r.device,
        r.tool_latency_ms,
        r.max_batch,
        r.batch_linger_ms,
        r.join_linger_steps
    );
    for c in [&r.rag, &r.on_demand] {
        print_modes(c);
    }
    if let Some(c) = &r.on_demand_varied {
        println!(
            "  (OnDemandVaried: each generated token ends the turn with chance {:.3})",
            r.stop_chance
        );
        print_modes(c);
    }
    for sc in r.scheduler.iter().chain(&r.scheduler_varied_tools) {
        print_scheduler(sc, r.tool_latency_ms);
    }
    println!(
        "GRPO step: {} trajectories, {} response tokens, best (median) of the timed steps",
        r.grpo_trajectories, r.grpo_response_tokens
    );
    println!(
        "  ours {:.1} ({:.1}) ms, PyTorch {:.1} ({:.1}) ms: ratio {:.2}; after one step the weights differ by ≤ {:.2e}, the updates by {:.2e} (relative)",
        r.grpo_step_ms,
        r.grpo_step_median_ms,
        r.torch_grpo_step_ms,
        r.torch_grpo_step_median_ms,
        r.grpo_step_ratio,
        r.grpo_max_weight_diff,
        r.grpo_update_rel_diff
    );
}

fn print_scheduler(sc: &SchedulerRuns, tool_ms: f64) {
    println!(
        "  scheduler alone (scripted policy, {:.1} ms a decode step whatever the batch, {:.1} tokens a turn, no cap on a call, tools {:.0}–{:.0} ms): async {:.2}x sync; early_search_start {:.2}x async without it; continuous batching {:.2}x sync, {:.2}x the longest trajectory's own chain ({:.0} ms)",
        sc.step_ms,
        sc.mean_turn_tokens,
        tool_ms * (1.0 - sc.tool_jitter),
        tool_ms * (1.0 + sc.tool_jitter),
        sc.async_speedup,
        sc.early_start_speedup,
        sc.continuous_speedup,
        sc.continuous.wall_ms / sc.critical_path_ms,
        sc.critical_path_ms
    );
    for (name, m) in [
        ("async", &sc.async_run),
        ("early", &sc.async_early),
        ("cont", &sc.continuous),
        ("sync", &sc.sync_run),
    ] {
        print_run(name, m);
    }
}

fn print_modes(c: &ModeComparison) {
    println!(
        "  {:?}: async speedup {:.2}x, continuous batching {:.2}x (at most {:.2}x for any schedule)",
        c.workload, c.async_speedup, c.continuous_speedup, c.async_bound
    );
    for (name, m) in [
        ("async", &c.async_run),
        ("cont", &c.continuous_run),
        ("sync", &c.sync_run),
    ] {
        print_run(name, m);
    }
}

fn print_run(name: &str, m: &ModeRun) {
    println!(
        "    {name:<5} {:>8.1} ms  (generate {:.1} ms in {} calls, {} overlapped; tools waited {:.1} ms over {} calls; {} tokens)",
        m.wall_ms,
        m.generate_ms,
        m.generate_calls,
        m.overlapped_calls,
        m.tool_wait_ms,
        m.tool_calls,
        m.generated_tokens
    );
}
