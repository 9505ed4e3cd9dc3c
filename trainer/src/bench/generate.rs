//! `mmsr-host bench generate`: decode and prefill throughput of
//! [`QwenVlPolicy`]'s generator on the demo's tiny Qwen2.5-VL, against
//! transformers' `generate` on the same weights and settings, run as a
//! subprocess in the same invocation (`tests/python/bench_generate_reference.py`).
//!
//! Both sides decode greedily with no stop token, so every row produces
//! exactly `new_tokens`; decode throughput excludes the prefill (ours from
//! the generator's own timers, transformers' as the difference between a
//! full run and a one-token run).
//!
//! It doubles as a parity check on whatever device and dtype it runs:
//! the report carries how many leading tokens of transformers' greedy
//! decode agree with ours, and the largest log-prob difference on a
//! teacher-forced continuation that is not greedy (the prompt again): the
//! random model's greedy tokens have p ≈ 1, whose log-probs are ≈ 0 at any
//! precision and so would hide a dtype error.

use super::{BenchTarget, python, repo, sync, tiny_qwen};
use crate::model::QwenVlPolicy;
use crate::model::generate::{GenParams, GenStats, SeqState, generate};
use crate::model::layers::Mode;
use crate::model::sampling::Sampling;
use crate::policy::{TrainablePolicy, Transcript};
use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};
use std::process::Command;

pub const NEW_TOKENS: usize = 64;
pub const BATCH: usize = 16;
/// Best of this many runs on each side (the machine may be shared).
pub const ROUNDS: usize = 5;
const PROMPT: &str = "Which town has this emblem? Think about the region, the founder and the trade, then answer briefly.";

#[derive(Debug, Serialize)]
pub struct GenerateReport {
    pub model: String,
    pub device: String,
    pub dtype: String,
    pub threads: i32,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub decode_tok_s_b1: f64,
    pub decode_tok_s_b16: f64,
    pub prefill_tok_s_b16: f64,
    pub reference_decode_tok_s_b1: f64,
    pub reference_decode_tok_s_b16: f64,
    pub reference_prefill_tok_s_b16: f64,
    pub decode_ratio_b1: f64,
    pub decode_ratio_b16: f64,
    /// Peak resident memory of this process (VmHWM), MiB.
    pub peak_rss_mib: f64,
    pub reference_peak_rss_mib: f64,
    /// Leading tokens of our batch-1 greedy continuation that transformers'
    /// greedy decode reproduces (of `new_tokens`).
    pub greedy_agree: usize,
    /// Largest |Δ log p| on a non-greedy continuation (the prompt's tokens
    /// again), teacher-forced on both.
    pub max_logprob_diff: f64,
}

#[derive(Debug, Deserialize)]
struct Reference {
    decode_tok_s_b1: f64,
    decode_tok_s_b16: f64,
    prefill_tok_s_b16: f64,
    peak_rss_mib: f64,
    greedy_ids: Vec<i64>,
    /// log p of the probe continuation's tokens under transformers.
    logprobs: Vec<f64>,
}

/// Peak resident set of this process, MiB (Linux; 0 elsewhere).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Best decode/prefill rates over `rounds` runs at batch `b`, and row 0's
/// tokens.
fn measure(
    policy: &QwenVlPolicy,
    prompt: &[i64],
    b: usize,
    rounds: usize,
) -> Result<(f64, f64, Vec<i64>)> {
    let params = GenParams {
        sampling: Sampling::greedy(),
        max_new_tokens: NEW_TOKENS,
        stop: Vec::new(),
        share_prefill: false,
    };
    let (mut decode, mut prefill, mut first) = (0f64, 0f64, Vec::new());
    for _ in 0..rounds {
        let mut seqs: Vec<SeqState> = (0..b).map(|_| SeqState::new()).collect();
        for s in &mut seqs {
            s.push(prompt, Vec::new(), policy.model())?;
        }
        let mut refs: Vec<&mut SeqState> = seqs.iter_mut().collect();
        let mut stats = GenStats::default();
        let outs = generate(
            policy.model(),
            &mut refs,
            &params,
            0,
            Mode::EVAL,
            &mut stats,
        )?;
        sync(policy.model().device());
        ensure!(
            outs.iter().all(|o| o.ids.len() == NEW_TOKENS),
            "a row stopped early"
        );
        first.clone_from(&outs[0].ids);
        // The first token comes from the prefill; the rest are decode steps.
        decode = decode.max((b * (NEW_TOKENS - 1)) as f64 / stats.decode_secs);
        prefill = prefill.max(stats.prefill_tokens as f64 / stats.prefill_secs);
    }
    Ok((decode, prefill, first))
}

/// Our teacher-forced log-probs of `ids` after `prompt`.
fn score(policy: &mut QwenVlPolicy, prompt: &[i64], ids: &[i64]) -> Result<Vec<f64>> {
    let tokens: Vec<i64> = prompt.iter().chain(ids).copied().collect();
    let mut response_mask = vec![0u8; prompt.len()];
    response_mask.resize(tokens.len(), 1);
    let t = Transcript {
        sample_logprobs: vec![0.0; tokens.len()],
        tokens,
        response_mask,
        images: Vec::new(),
    };
    let s = tch::no_grad(|| policy.score(&[&t], 1.0, false))?;
    let row = s
        .logprobs
        .get(0)
        .narrow(0, prompt.len() as i64, ids.len() as i64)
        .to_device(tch::Device::Cpu)
        .to_kind(tch::Kind::Double);
    Ok(Vec::<f64>::try_from(&row)?)
}

pub fn run(target: &BenchTarget) -> Result<GenerateReport> {
    let dir = tempfile::tempdir()?;
    let (mut policy, weights) = tiny_qwen(dir.path(), target)?;

    let tok = policy.tokenizer();
    let text = tok.render(
        &[crate::model::tokenizer::ChatTokenizer::user_message(&[
            crate::model::tokenizer::Part::Text(PROMPT.into()),
        ])],
        true,
    )?;
    let prompt = tok.encode(&text)?;
    let threads = tch::get_num_threads();

    // Warm up, then the best of a few rounds.
    measure(&policy, &prompt, 1, 1)?;
    let (b1, _, greedy) = measure(&policy, &prompt, 1, ROUNDS)?;
    let (b16, prefill16, _) = measure(&policy, &prompt, BATCH, ROUNDS)?;
    let peak = peak_rss_mib();
    let probe = prompt[1..].to_vec();
    let ours_lp = score(&mut policy, &prompt, &probe)?;

    let ids = dir.path().join("prompt.json");
    std::fs::write(&ids, serde_json::to_string(&prompt)?)?;
    let cont = dir.path().join("continuation.json");
    std::fs::write(&cont, serde_json::to_string(&probe)?)?;
    let (device, dtype) = target.torch_names()?;
    let script = repo().join("tests/python/bench_generate_reference.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(&weights)
        .arg(&ids)
        .arg(&cont)
        .args(["--device", &device, "--dtype", dtype])
        .args([
            "--new-tokens",
            &NEW_TOKENS.to_string(),
            "--batch",
            &BATCH.to_string(),
        ])
        .args([
            "--threads",
            &threads.to_string(),
            "--rounds",
            &ROUNDS.to_string(),
        ])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        out.status.success(),
        "the transformers reference failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let r: Reference = serde_json::from_str(last)
        .with_context(|| format!("reading the reference's output {last:?}"))?;
    ensure!(
        r.logprobs.len() == ours_lp.len(),
        "the reference scored {} tokens, not {}",
        r.logprobs.len(),
        ours_lp.len()
    );
    let greedy_agree = greedy
        .iter()
        .zip(&r.greedy_ids)
        .take_while(|(a, b)| a == b)
        .count();
    let max_logprob_diff = ours_lp
        .iter()
        .zip(&r.logprobs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    Ok(GenerateReport {
        model: "demo tiny Qwen2.5-VL (hidden 128, 4 layers, vocab 2048)".into(),
        device,
        dtype: dtype.into(),
        threads,
        prompt_tokens: prompt.len(),
        new_tokens: NEW_TOKENS,
        decode_tok_s_b1: b1,
        decode_tok_s_b16: b16,
        prefill_tok_s_b16: prefill16,
        reference_decode_tok_s_b1: r.decode_tok_s_b1,
        reference_decode_tok_s_b16: r.decode_tok_s_b16,
        reference_prefill_tok_s_b16: r.prefill_tok_s_b16,
        decode_ratio_b1: b1 / r.decode_tok_s_b1,
        decode_ratio_b16: b16 / r.decode_tok_s_b16,
        peak_rss_mib: peak,
        reference_peak_rss_mib: r.peak_rss_mib,
        greedy_agree,
        max_logprob_diff,
    })
}

pub fn print_table(r: &GenerateReport) {
    println!(
        "generate: {}, {} on {} ({} CPU threads)",
        r.model, r.dtype, r.device, r.threads
    );
    println!(
        "prompt {} tokens, {} new tokens per row, greedy",
        r.prompt_tokens, r.new_tokens
    );
    println!(
        "{:<22}{:>14}{:>16}{:>10}",
        "", "mmsr tok/s", "transformers", "ratio"
    );
    println!(
        "{:<22}{:>14.0}{:>16.0}{:>9.2}x",
        "decode, batch 1", r.decode_tok_s_b1, r.reference_decode_tok_s_b1, r.decode_ratio_b1
    );
    println!(
        "{:<22}{:>14.0}{:>16.0}{:>9.2}x",
        "decode, batch 16", r.decode_tok_s_b16, r.reference_decode_tok_s_b16, r.decode_ratio_b16
    );
    println!(
        "{:<22}{:>14.0}{:>16.0}",
        "prefill, batch 16", r.prefill_tok_s_b16, r.reference_prefill_tok_s_b16
    );
    println!(
        "peak RSS: {:.0} MiB (transformers {:.0} MiB)",
        r.peak_rss_mib, r.reference_peak_rss_mib
    );
    println!(
        "parity: transformers' greedy decode agrees on the first {} of {} tokens; max |Δ log p| on a teacher-forced continuation {:.2e}",
        r.greedy_agree, r.new_tokens, r.max_logprob_diff
    );
}
