"""One GRPO update step in plain PyTorch: the baseline of `mmsr-host bench rollout`.

Usage: grpo_step.py DIR

DIR holds what the Rust bench wrote:
  model/            the policy, exported (config.json names its model_type)
  batch.safetensors tokens [B, L] (zero-padded), mask [B, L], lengths [B], advantages [B],
                    and for transcripts with images: image_bytes (the encoded images,
                    concatenated), image_sizes and image_rows (each image's length and row)
  settings.json     clip, KL, entropy, batching, AdamW and clipping settings, repeats,
                    device, dtype, and the names of the trainable weights

The step is the trainer's (trainer/src/train/update.rs): old log-probs and the
entropy under no_grad (on-policy: the backward pass's own, detached), reference
log-probs, then ppo_epochs x mini-batches x
micro-batches with gradient accumulation, the clipped loss plus k3 KL as a
token mean over each mini-batch, grad-norm clipping and torch.optim.AdamW.
One untimed step, then `repeats` timed ones. Writes:
  weights.safetensors  the trainable weights after the first step
  result.json          {"best_ms": ..., "median_ms": ..., "step_ms": [...]}
"""
import copy
import inspect
import io
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

IM_START = 0x110000


def token_scores(logits, nxt, lengths, with_entropy):
    """Log-probs of `nxt` under `logits` [B, L-1, V] (and the entropy), aligned
    with the tokens like the trainer's TokenScores: 0 at t = 0 and on padding."""
    b, length = nxt.shape[0], nxt.shape[1] + 1
    logp_all = logits.log_softmax(-1)
    picked = logp_all.gather(2, nxt.unsqueeze(-1)).squeeze(-1)
    pos = torch.arange(length, device=nxt.device).unsqueeze(0)
    valid = ((pos > 0) & (pos < lengths.unsqueeze(1))).float()
    pad = torch.zeros(b, 1, device=nxt.device)
    logp = torch.cat([pad, picked], 1) * valid
    entropy = None
    if with_entropy:
        h = -(logp_all.exp() * logp_all).sum(-1)
        entropy = torch.cat([pad, h], 1) * valid
    return logp, entropy


class BigramTwin:
    """testkit/bigram.rs: logits of token t+1 are row(token t) of one
    [133, 133] table over ASCII and the five chat specials."""

    model_type = "mmsr-bigram"

    def __init__(self, model_dir, batch, s):
        assert s["device"] == "cpu", "the bigram twin runs on the CPU"
        w = load_file(str(model_dir / "model.safetensors"))["bigram.weight"]
        self.weight = w.clone().requires_grad_(True)
        self.reference = w.clone()

    def parameters(self):
        return {"bigram.weight": self.weight}

    @staticmethod
    def rows(ids):
        special = (ids >= IM_START) & (ids < IM_START + 5)
        return torch.where(
            ids < 128, ids, torch.where(special, 128 + ids - IM_START, torch.full_like(ids, ord("?")))
        )

    def _score(self, weight, tokens, lengths, temperature, with_entropy):
        b, length = tokens.shape
        rows = self.rows(tokens)
        prev, nxt = rows[:, :-1], rows[:, 1:]
        vocab = weight.shape[0]
        logits = weight.index_select(0, prev.flatten()).view(b, length - 1, vocab) / temperature
        return token_scores(logits, nxt, lengths, with_entropy)

    def score(self, rows, tokens, lengths, temperature, with_entropy):
        return self._score(self.weight, tokens, lengths, temperature, with_entropy)

    def score_reference(self, rows, tokens, lengths, temperature):
        with torch.no_grad():
            return self._score(self.reference, tokens, lengths, temperature, False)[0]


def hf_name(ours, named):
    """The trainer's weight names are the hub's checkpoint names, or
    transformers 5's in-memory ones; find the module parameter."""
    for cand in (
        ours,
        ours.replace("model.", "model.language_model.", 1) if ours.startswith("model.") else None,
        "model." + ours if ours.startswith("visual.") else None,
    ):
        if cand in named:
            return cand
    raise KeyError(f"no parameter of the transformers model matches {ours!r}")


class QwenVlTwin:
    """transformers' Qwen2_5_VLForConditionalGeneration on the same weights:
    full-vocab logits at every position, log-softmax, gather (what a plain
    PyTorch GRPO does). Images go through transformers' own processor once,
    up front."""

    model_type = "qwen2_5_vl"

    def __init__(self, model_dir, batch, s):
        from PIL import Image
        from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessor

        self.device = torch.device(s["device"])
        dtype = getattr(torch, s["dtype"])
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            model_dir, dtype=dtype, attn_implementation="sdpa"
        ).to(self.device)
        model.train()
        for p in model.parameters():
            p.requires_grad_(False)
        self.reference = copy.deepcopy(model).eval()
        named = dict(model.named_parameters())
        self.names = {ours: hf_name(ours, named) for ours in s["trainable"]}
        for hf in self.names.values():
            named[hf].requires_grad_(True)
        self.named = named
        self.model = model
        self.image_pad = model.config.image_token_id
        self.takes_mm_types = "mm_token_type_ids" in inspect.signature(model.forward).parameters

        # Each image's pixel rows, processed once.
        self.images = {}
        if "image_sizes" in batch:
            proc = Qwen2VLImageProcessor.from_pretrained(model_dir)
            raw = batch["image_bytes"].numpy().tobytes()
            offset = 0
            for size, row in zip(batch["image_sizes"].tolist(), batch["image_rows"].tolist()):
                img = Image.open(io.BytesIO(raw[offset : offset + size])).convert("RGB")
                offset += size
                got = proc(images=[img], return_tensors="pt")
                self.images.setdefault(row, []).append(
                    (got["pixel_values"].to(self.device, dtype), got["image_grid_thw"].to(self.device))
                )

    def parameters(self):
        return {ours: self.named[hf] for ours, hf in self.names.items()}

    def _forward(self, model, rows, tokens, lengths, temperature, with_entropy):
        pos = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)
        attn = (pos < lengths.unsqueeze(1)).long()
        kwargs = {}
        imgs = [im for r in rows for im in self.images.get(r, [])]
        if imgs:
            kwargs["pixel_values"] = torch.cat([p for p, _ in imgs])
            kwargs["image_grid_thw"] = torch.cat([g for _, g in imgs])
            if self.takes_mm_types:
                kwargs["mm_token_type_ids"] = (tokens == self.image_pad).long() * attn
        logits = model(input_ids=tokens, attention_mask=attn, **kwargs).logits[:, :-1].float() / temperature
        return token_scores(logits, tokens[:, 1:], lengths, with_entropy)

    def score(self, rows, tokens, lengths, temperature, with_entropy):
        return self._forward(self.model, rows, tokens, lengths, temperature, with_entropy)

    def score_reference(self, rows, tokens, lengths, temperature):
        with torch.no_grad():
            return self._forward(self.reference, rows, tokens, lengths, temperature, False)[0]


TWINS = {t.model_type: t for t in [BigramTwin, QwenVlTwin]}


def chunks(start, stop, size):
    return [range(i, min(i + size, stop)) for i in range(start, stop, size)]


def grpo_step(policy, opt, params, batch, s):
    tokens, mask, lengths, adv = batch["tokens"], batch["mask"], batch["lengths"], batch["advantages"]
    n = tokens.shape[0]
    micro = max(1, s["micro_batch"])

    def sub(r):
        # Views, padded to the longest transcript of the micro-batch.
        length = int(lengths[r.start : r.stop].max())
        return tokens[r.start : r.stop, :length], mask[r.start : r.stop, :length], lengths[r.start : r.stop]

    old, ref = [None] * n, [None] * n
    ent_sum, tok_all = 0.0, 0.0
    mini = s["mini_batch"] or n
    # On-policy (one pass, one optimizer step), the ratio's denominator is
    # the backward pass's own log-probs, detached, as in the trainer.
    on_policy = s["ppo_epochs"] == 1 and mini >= n
    for part in chunks(0, n, micro) if not on_policy else []:
        t, m, ln = sub(part)
        with torch.no_grad():
            lp, ent = policy.score(part, t, ln, s["temperature"], True)
        ent_sum += (ent * m).sum().item()
        tok_all += m.sum().item()
        for k, i in enumerate(part):
            old[i] = lp[k]
    if s["kl_coef"] > 0:
        for part in chunks(0, n, micro):
            t, m, ln = sub(part)
            r = policy.score_reference(part, t, ln, s["temperature"])
            for k, i in enumerate(part):
                ref[i] = r[k]

    use_entropy = s["entropy_coef"] != 0
    for _ in range(s["ppo_epochs"]):
        for mb in chunks(0, n, mini):
            tokens_mb = float(mask[mb.start : mb.stop].sum())
            opt.zero_grad()
            for part in chunks(mb.start, mb.stop, micro):
                t, m, ln = sub(part)
                length = t.shape[1]
                a = adv[part.start : part.stop].unsqueeze(1)
                logp, ent = policy.score(part, t, ln, s["temperature"], use_entropy or on_policy)
                if on_policy:
                    old_t = logp.detach()
                    ent_sum += (ent.detach() * m).sum().item()
                    tok_all += m.sum().item()
                else:
                    old_t = torch.stack([old[i][:length] for i in part])
                agg = lambda x: (x * m).sum() / max(tokens_mb, 1.0)  # noqa: E731
                ratio = (logp - old_t).clamp(-20, 20).exp()
                unclipped = -a * ratio
                clipped = -a * ratio.clamp(1 - s["clip_low"], 1 + s["clip_high"])
                policy_loss = agg(torch.maximum(unclipped, clipped))
                loss = policy_loss
                clip_frac = agg(clipped.gt(unclipped).float())
                kl = None
                if s["kl_coef"] > 0:
                    ref_t = torch.stack([ref[i][:length] for i in part])
                    d = (ref_t - logp).clamp(-20, 20)
                    kl = agg((d.exp() - d - 1).clamp(-10, 10))
                    loss = loss + s["kl_coef"] * kl
                if use_entropy:
                    loss = loss - s["entropy_coef"] * agg(ent)
                # The same scalars the trainer logs.
                policy_loss.item(), clip_frac.item()
                if kl is not None:
                    kl.item()
                loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, s["grad_clip"]) if s["grad_clip"] > 0 else None
            if norm is None or torch.isfinite(norm):
                opt.step()
            opt.zero_grad()
    return ent_sum / max(tok_all, 1.0)


def main():
    d = Path(sys.argv[1])
    s = json.loads((d / "settings.json").read_text())
    model_type = json.loads((d / "model" / "config.json").read_text())["model_type"]
    if model_type not in TWINS:
        sys.exit(f"no PyTorch twin for model_type {model_type!r} (have {sorted(TWINS)})")
    batch = load_file(str(d / "batch.safetensors"))
    policy = TWINS[model_type](d / "model", batch, s)
    device = torch.device(s["device"])
    batch = {k: v.to(device) for k, v in batch.items() if not k.startswith("image_")}
    named = policy.parameters()
    params = list(named.values())
    opt = torch.optim.AdamW(
        params, lr=s["lr"], betas=tuple(s["betas"]), eps=s["eps"], weight_decay=s["weight_decay"]
    )
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    times = []
    for r in range(s["repeats"] + 1):
        sync()
        t0 = time.perf_counter()
        grpo_step(policy, opt, params, batch, s)
        sync()
        ms = (time.perf_counter() - t0) * 1e3
        if r == 0:
            save_file({k: v.detach().float().cpu().contiguous() for k, v in named.items()}, str(d / "weights.safetensors"))
        else:
            times.append(ms)
    (d / "result.json").write_text(json.dumps({"best_ms": min(times), "median_ms": statistics.median(times), "step_ms": times}))


if __name__ == "__main__":
    main()
