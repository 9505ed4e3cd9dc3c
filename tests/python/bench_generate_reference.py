"""transformers' side of `mmsr-host bench generate`: greedy decode of the
same weights and prompt, no stop token, batch 1 and batch N.

Usage: bench_generate_reference.py MODEL_DIR PROMPT_IDS.json CONTINUATION.json [--new-tokens 64]
       [--batch 16] [--threads T] [--rounds R] [--device cpu|cuda:N] [--dtype float32|bfloat16|float16]
Prints one JSON line: decode_tok_s_b1, decode_tok_s_b16, prefill_tok_s_b16, peak_rss_mib,
greedy_ids (batch 1) and logprobs (of CONTINUATION.json's tokens after the prompt, teacher-forced:
the Rust side's parity check; it passes a continuation that is not greedy).
Decode time = a full run minus a one-token run (which is the prefill).
"""
import argparse
import json
import resource
import time

import torch
from transformers import Qwen2_5_VLForConditionalGeneration


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(model, ids, new):
    mask = torch.ones_like(ids)
    sync(ids.device)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
            do_sample=False, eos_token_id=None, pad_token_id=0,
        )
    sync(ids.device)
    assert out.shape[1] == ids.shape[1] + new
    return time.perf_counter() - t0


def greedy(model, prompt, new, device):
    ids = torch.tensor([prompt], device=device)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
            min_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0,
        )
    return out[0, len(prompt):].tolist()


def logprobs(model, prompt, cont, device):
    ids = torch.tensor([prompt + cont], device=device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    lp = logits.log_softmax(-1).gather(1, torch.tensor(cont, device=device).unsqueeze(1))
    return lp.squeeze(1).tolist()


def rates(model, prompt, batch, new, rounds, device):
    ids = torch.tensor([prompt] * batch, device=device)
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
    ap.add_argument("continuation")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(a.model, dtype=getattr(torch, a.dtype))
    model = model.to(device).eval()
    prompt = json.load(open(a.prompt))
    cont = json.load(open(a.continuation))
    b1, _ = rates(model, prompt, 1, a.new_tokens, a.rounds, device)
    bn, prefill = rates(model, prompt, a.batch, a.new_tokens, a.rounds, device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "decode_tok_s_b1": b1, "decode_tok_s_b16": bn, "prefill_tok_s_b16": prefill, "peak_rss_mib": peak,
        "greedy_ids": greedy(model, prompt, a.new_tokens, device),
        "logprobs": logprobs(model, prompt, cont, device),
    }))


if __name__ == "__main__":
    main()
