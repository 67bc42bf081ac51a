"""A tiny random-weight InternVL checkpoint in transformers' layout, for CPU tests, ``bench/`` and
demos of ``fleming eval run`` (no hub: the tokenizer is a tiny BPE trained here).

2 ViT layers on 56 px tiles (patch 14, pixel unshuffle 0.5: 4 tokens a tile) and 2 Qwen2 layers;
every weight drawn from a seeded generator at unit output scale, so the greedy answers depend on
the image and the prompt. The folder holds ``config.json``, ``model.safetensors`` and the
tokenizer's ``tokenizer.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from megatron_fleming.data.tokenizer import IM_END, PAD, train_tiny_tokenizer

_CORPUS = ("Question: Options: Answer with the option's letter from the given choices directly. "
           "Please output 'yes' or 'no'(no extra output). Please answer the question concisely. "
           "Answer the question using a single word or phrase. Findings: Impression: report images "
           "yes no heart lung liver CT MRI A B C D 是 否 左肺 肺 问题 选项 请 回答 assistant user system")


@torch.no_grad()
def write_tiny_internvl(folder: str | Path, *, seed: int = 0, texts: Iterable[str] = (), vocab_size: int = 400) -> Path:
    from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLVisionConfig, Qwen2Config

    folder = Path(folder)
    tok = train_tiny_tokenizer([_CORPUS, *texts], vocab_size=vocab_size)
    vision = InternVLVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                  image_size=56, patch_size=14, attention_bias=True, norm_type="layer_norm")
    text = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=96, vocab_size=tok.vocab_size, max_position_embeddings=2048,
                       rope_theta=1e6, tie_word_embeddings=False, eos_token_id=tok.token_id(IM_END),
                       pad_token_id=tok.token_id(PAD))
    cfg = InternVLConfig(vision_config=vision, text_config=text, image_token_id=tok.image_context_id,
                         image_seq_length=4, tie_word_embeddings=False)
    gen = torch.Generator().manual_seed(seed)
    model = InternVLForConditionalGeneration(cfg).eval()
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen)
        if ("norm" in name and name.endswith(".weight")) or "lambda_" in name:
            p.copy_(1 + 0.2 * noise)
        elif "embed_tokens" in name:
            p.copy_(0.5 * noise)
        elif p.dim() >= 2:
            p.copy_(noise / (p.numel() / p.shape[0]) ** 0.5)
        else:
            p.copy_(0.2 * noise)
    model.save_pretrained(folder)
    tok.save(folder)
    return folder
