"""Tiny random transformers InternVL models for the conversion and parity tests (no hub)."""

from __future__ import annotations

import torch
from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLVisionConfig, Qwen2Config


@torch.no_grad()
def random_model(cfg: InternVLConfig, seed: int) -> InternVLForConditionalGeneration:
    """Every tensor random (transformers zero-inits CLS/positions and sets layer scales to 0.1)."""
    gen = torch.Generator().manual_seed(seed)
    model = InternVLForConditionalGeneration(cfg).eval()
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen)
        if ("norm" in name and name.endswith(".weight")) or "lambda_" in name:
            p.copy_(1 + 0.2 * noise)  # norm gains and layer scales around one
        elif "embed_tokens" in name:
            p.copy_(0.5 * noise)
        elif p.dim() >= 2:
            p.copy_(noise / (p.numel() / p.shape[0]) ** 0.5)  # unit-variance outputs
        else:
            p.copy_(0.2 * noise)  # biases
    return model


def internvit6b_style_config() -> InternVLConfig:
    """InternViT-6B's layout at toy size: RMSNorm, QK-norm over all heads, no QKV bias, and 3
    heads, which TP 2 can only split once padded with a zero head."""
    vision = InternVLVisionConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                                  intermediate_size=96, image_size=56, patch_size=14,
                                  attention_bias=False, norm_type="rms_norm", use_qk_norm=True,
                                  layer_norm_eps=1e-6)
    text = Qwen2Config(hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=96, vocab_size=64,
                       max_position_embeddings=128, rope_theta=1e6)
    return InternVLConfig(vision_config=vision, text_config=text, image_token_id=63,
                          image_seq_length=4)
