"""transformers' side of `mmsr-host bench generate`: greedy decode of the
same weights and prompt, no stop token, batch 1 and batch N.

Usage: bench_generate_reference.py MODEL_DIR PROMPT_IDS.json [--new-tokens 64] [--batch 16]
       [--threads T] [--rounds R]
Prints one JSON line: decode_tok_s_b1, decode_tok_s_b16, prefill_tok_s_b16, peak_rss_mib.
Decode time = a full run minus a one-token run (which is the prefill).
"""
import argparse
import json
import resource
import time

import torch
from transformers import Qwen2_5_VLForConditionalGeneration


def timed(model, ids, new):
    mask = torch.ones_like(ids)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
            do_sample=False, eos_token_id=None, pad_token_id=0,
        )
    assert out.shape[1] == ids.shape[1] + new
    return time.perf_counter() - t0


def rates(model, prompt, batch, new, rounds=3):
    ids = torch.tensor([prompt] * batch)
    timed(model, ids, new)  # warm-up
    decode, prefill = 0.0, 0.0
    for _ in range(rounds):
        one = timed(model, ids, 1)
        full = timed(model, ids, new)
        decode = max(decode, batch * (new - 1) / max(full - one, 1e-9))
        prefill = max(prefill, batch * len(prompt) / one)
    return decode, prefill


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prompt")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(a.model, dtype=torch.float32).eval()
    prompt = json.load(open(a.prompt))
    b1, _ = rates(model, prompt, 1, a.new_tokens, a.rounds)
    bn, prefill = rates(model, prompt, a.batch, a.new_tokens, a.rounds)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"decode_tok_s_b1": b1, "decode_tok_s_b16": bn, "prefill_tok_s_b16": prefill, "peak_rss_mib": peak}))


if __name__ == "__main__":
    main()
