"""Reference outputs of a tiny random Qwen2.5-VL from transformers, for the
Rust parity tests (trainer/tests/qwen_parity.rs).

Usage:
  qwen_vl_reference.py build OUT          tiny model in OUT/model, references in OUT/
  qwen_vl_reference.py logits MODEL OUT   logits of OUT/inputs.safetensors under MODEL
                                          (the round trip of a dir the Rust side saved)

`build` writes:
  model/                  config.json, model.safetensors, tokenizer.json,
                          tokenizer_config.json (Qwen2.5-VL chat template),
                          preprocessor_config.json, generation_config.json
  images/*.png, *.jpg     test images of several sizes
  inputs.safetensors      input_ids, mm_token_type_ids, pixel_values,
                          image_grid_thw of the multimodal prompt; text_ids;
                          the same with suffix _2 for a two-image prompt
  reference.safetensors   logits_mm, logits_text, logits_mm2, and per test image
                          pixel_values.NAME / image_grid_thw.NAME
  reference.json          greedy token ids, chat-formatted token ids
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

QWEN_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

ADDED = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# Qwen2.5-VL-7B-Instruct's chat template.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "You are a helpful assistant.",
    "What is the name of the town shown in this picture? Answer briefly.",
    "<reason>The emblem shows a tower.</reason><answer>Vorlak</answer>",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "Search results: 1. Vorlak (town) - a town in Drennmoor, famous for its glass.",
] * 20

# Chat-formatted conversations whose ids the Rust tokenizer must reproduce.
CONVERSATIONS = [
    [{"role": "user", "content": "What is the name of the town?"}],
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which town has this emblem?"}]}],
    [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "image"}]},
        {"role": "assistant", "content": "<reason>a tower</reason><answer>Vorlak</answer>"},
        {"role": "user", "content": "Search results: 1. Vorlak (town)"},
    ],
]

# Test images: (name, width, height, format). Sizes exercise upscaling to
# min_pixels, downscaling to max_pixels, odd aspect ratios, several windows.
IMAGES = [
    ("square56", 56, 56, "png"),
    ("wide", 224, 168, "png"),
    ("tiny", 20, 20, "png"),
    ("tall", 41, 300, "png"),
    ("big", 400, 330, "png"),
    ("odd", 97, 61, "png"),
    ("photo", 128, 112, "jpg"),
]
MIN_PIXELS = 56 * 56
MAX_PIXELS = 256 * 256


def picture(width, height, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    r = 127 + 120 * np.sin(x / 7.0 + seed)
    g = 127 + 120 * np.cos(y / 5.0)
    b = (x * 3 + y * 5) % 256
    img = np.stack([r, g, b], -1) + rng.normal(0, 20, (height, width, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def tokenizer():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_special_tokens(ADDED)
    return tok


def write_model(out: Path):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = tokenizer()
    tok.save(str(out / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in ADDED}
    vocab = (tok.get_vocab_size() + 63) // 64 * 64
    json.dump({
        "chat_template": CHAT_TEMPLATE,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "bos_token": None,
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 32768,
        "tokenizer_class": "Qwen2Tokenizer",
        "split_special_tokens": False,
    }, open(out / "tokenizer_config.json", "w"), indent=1)
    json.dump({
        "image_processor_type": "Qwen2VLImageProcessor",
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "do_convert_rgb": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS,
        "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    }, open(out / "preprocessor_config.json", "w"), indent=1)

    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                "mrope_section": [2, 3, 3]},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
            fullatt_block_indexes=[1], tokens_per_second=2,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    # Random everything (biases and norms too), at a scale where logits are
    # far from uniform, so greedy decoding has clear winners.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_q" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    model.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    return model, tok, ids


def processor(model_dir: Path):
    from transformers import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor.from_pretrained(model_dir)


def logits_of(model, inputs):
    with torch.no_grad():
        mm = model(
            input_ids=inputs["input_ids"],
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
        ).logits[0]
        text = model(input_ids=inputs["text_ids"]).logits[0]
        mm2 = model(
            input_ids=inputs["input_ids_2"],
            pixel_values=inputs["pixel_values_2"],
            image_grid_thw=inputs["image_grid_thw_2"],
            mm_token_type_ids=inputs["mm_token_type_ids_2"],
        ).logits[0]
    return mm, text, mm2


def build(out: Path):
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    model, tok, ids = write_model(model_dir)
    proc = processor(model_dir)

    refs = {}
    for i, (name, w, h, fmt) in enumerate(IMAGES):
        path = out / "images" / f"{name}.{fmt}"
        picture(w, h, i).save(path, format="PNG" if fmt == "png" else "JPEG", quality=85)
        got = proc(images=[Image.open(path)], return_tensors="pt")
        refs[f"pixel_values.{name}"] = got["pixel_values"].contiguous()
        refs[f"image_grid_thw.{name}"] = got["image_grid_thw"].contiguous()

    # The multimodal prompt: text, the "wide" image (6x8 merged tokens, 2x2
    # windows in the vision tower), more text.
    image = Image.open(out / "images" / "wide.png")
    pv = proc(images=[image], return_tensors="pt")
    n_pad = int(pv["image_grid_thw"].prod()) // 4
    before = tok.encode("<|im_start|>user\nWhat town is this?").ids
    after = tok.encode("<|vision_end|>Answer briefly.<|im_end|>\n<|im_start|>assistant\n").ids
    input_ids = before + [ids["<|vision_start|>"]] + [ids["<|image_pad|>"]] * n_pad + after
    mm_types = [1 if t == ids["<|image_pad|>"] else 0 for t in input_ids]
    text_ids = tok.encode("The quick brown fox jumps over the lazy dog. What is the name?").ids
    # Two images of different sizes in one prompt.
    two = proc(images=[Image.open(out / "images" / "odd.png"), Image.open(out / "images" / "big.png")], return_tensors="pt")
    pads = [int(g.prod()) // 4 for g in two["image_grid_thw"]]
    vis = lambda n: [ids["<|vision_start|>"]] + [ids["<|image_pad|>"]] * n + [ids["<|vision_end|>"]]
    ids2 = before + vis(pads[0]) + tok.encode(" and ").ids + vis(pads[1]) + tok.encode("Same town?").ids
    inputs = {
        "input_ids": torch.tensor([input_ids]),
        "mm_token_type_ids": torch.tensor([mm_types]),
        "pixel_values": pv["pixel_values"],
        "image_grid_thw": pv["image_grid_thw"],
        "text_ids": torch.tensor([text_ids]),
        "input_ids_2": torch.tensor([ids2]),
        "mm_token_type_ids_2": torch.tensor([[1 if t == ids["<|image_pad|>"] else 0 for t in ids2]]),
        "pixel_values_2": two["pixel_values"],
        "image_grid_thw_2": two["image_grid_thw"],
    }
    save_file({k: v.contiguous() for k, v in inputs.items()}, out / "inputs.safetensors")

    mm, text, mm2 = logits_of(model, inputs)
    refs["logits_mm"] = mm.contiguous()
    refs["logits_text"] = text.contiguous()
    refs["logits_mm2"] = mm2.contiguous()
    with torch.no_grad():
        gen = model.generate(
            **{k: v for k, v in inputs.items() if k in ("input_ids", "mm_token_type_ids", "pixel_values", "image_grid_thw")},
            attention_mask=torch.ones_like(inputs["input_ids"]),
            max_new_tokens=20, min_new_tokens=20, do_sample=False,
        )
    greedy = gen[0, len(input_ids):].tolist()
    save_file(refs, out / "reference.safetensors")

    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(model_dir)
    chats = []
    for conv in CONVERSATIONS:
        for gen_prompt in (False, True):
            text = hf_tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen_prompt)
            chats.append({
                "messages": conv, "add_generation_prompt": gen_prompt, "text": text,
                "ids": hf_tok(text, add_special_tokens=False)["input_ids"],
            })
    json.dump({"greedy": greedy, "chats": chats, "token_ids": ids}, open(out / "reference.json", "w"), indent=1)


def logits(model_dir: Path, out: Path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    inputs = load_file(out / "inputs.safetensors")
    mm, text, mm2 = logits_of(model, inputs)
    save_file({"logits_mm": mm.contiguous(), "logits_text": text.contiguous(), "logits_mm2": mm2.contiguous()},
              out / "roundtrip.safetensors")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "build":
        build(Path(args[0]))
    elif cmd == "logits":
        logits(Path(args[0]), Path(args[1]))
    else:
        sys.exit(f"unknown command {cmd!r}")
