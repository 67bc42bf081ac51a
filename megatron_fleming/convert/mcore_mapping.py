"""Per-tensor mapping between transformers' InternVL names and `FlemingVLM`'s full state dict.

The Megatron side is the state dict of a TP=1, PP=1 `FlemingVLM` (layout documented in
`megatron_fleming.model`): fused QKV grouped per query group (per head in the ViT, with zero
heads appended when `VisionConfig.num_padded_heads` asks for them), SwiGLU ``linear_fc1`` =
``[gate_proj; up_proj]``, layer scale ``ls1/ls2``, and the embedding / LM head padded with zero
rows to `LanguageConfig.padded_vocab_size` (stripped again on the way back). Both directions are
rule tables
(`convert.tensors`), so each is checked for completeness and built lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from megatron_fleming.convert.hf_layouts import EMBED_TOKENS, LM_HEAD
from megatron_fleming.convert.tensors import RuleTable, TensorRule, rename
from megatron_fleming.model.config import VLMConfig

MCORE_EMBED = "language_model.embedding.word_embeddings.weight"
MCORE_OUTPUT = "language_model.output_layer.weight"


def _pad_rows(rows: int, t: torch.Tensor) -> torch.Tensor:
    if t.shape[0] == rows:
        return t
    return torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])], dim=0)


def _pad_cols(cols: int, t: torch.Tensor) -> torch.Tensor:
    if t.shape[1] == cols:
        return t
    return torch.cat([t, t.new_zeros(t.shape[0], cols - t.shape[1])], dim=1)


def _fuse_qkv(groups: int, q_rows: int, kv_rows: int, q: torch.Tensor, k: torch.Tensor,
              v: torch.Tensor) -> torch.Tensor:
    """[q; k; v] -> per group [q_g; k_g; v_g]; q/k/v are first padded with zero heads to `groups`
    whole groups (the ViT's head padding; a no-op elsewhere)."""
    q, k, v = _pad_rows(groups * q_rows, q), _pad_rows(groups * kv_rows, k), _pad_rows(groups * kv_rows, v)
    parts = [t.reshape(groups, -1, *t.shape[1:]) for t in (q, k, v)]
    return torch.cat(parts, dim=1).reshape(-1, *q.shape[1:])


def _qkv_part(groups: int, q_rows: int, kv_rows: int, real_rows: tuple[int, int, int], part: int,
              fused: torch.Tensor) -> torch.Tensor:
    """One of q, k, v (part 0, 1, 2) out of a per-group fused tensor, padding heads dropped."""
    per_group = fused.reshape(groups, q_rows + 2 * kv_rows, *fused.shape[1:])
    start, size = ((0, q_rows), (q_rows, kv_rows), (q_rows + kv_rows, kv_rows))[part]
    out = per_group[:, start:start + size].reshape(-1, *fused.shape[1:])
    return out[:real_rows[part]].clone()


def _cat_rows(*parts: torch.Tensor) -> torch.Tensor:
    return torch.cat(parts, dim=0)


def _half(index: int, t: torch.Tensor) -> torch.Tensor:
    return t.chunk(2, dim=0)[index].clone()


def _first_rows(rows: int, t: torch.Tensor) -> torch.Tensor:
    return t[:rows].clone()


def _first_cols(cols: int, t: torch.Tensor) -> torch.Tensor:
    return t[:, :cols].clone()


def _vision_pairs(cfg: VLMConfig, i: int) -> list[tuple[str, str]]:
    """(mcore, transformers) names that map one to one in ViT layer i."""
    m, h = f"vision_model.decoder.layers.{i}.", f"vision_tower.encoder.layer.{i}."
    norm = ("weight", "bias") if cfg.vision.norm == "layernorm" else ("weight",)
    pairs = [(f"{m}ls1", f"{h}lambda_1"), (f"{m}ls2", f"{h}lambda_2"),
             (f"{m}self_attention.linear_proj.bias", f"{h}attention.projection_layer.bias")]
    pairs += [(f"{m}input_layernorm.{p}", f"{h}layernorm_before.{p}") for p in norm]
    pairs += [(f"{m}pre_mlp_layernorm.{p}", f"{h}layernorm_after.{p}") for p in norm]
    pairs += [(f"{m}mlp.linear_fc{j}.{p}", f"{h}mlp.fc{j}.{p}") for j in (1, 2) for p in ("weight", "bias")]
    return pairs


def _language_pairs(i: int) -> list[tuple[str, str]]:
    m, h = f"language_model.decoder.layers.{i}.", f"language_model.model.layers.{i}."
    return [(f"{m}input_layernorm.weight", f"{h}input_layernorm.weight"),
            (f"{m}self_attention.linear_proj.weight", f"{h}self_attn.o_proj.weight"),
            (f"{m}pre_mlp_layernorm.weight", f"{h}post_attention_layernorm.weight"),
            (f"{m}mlp.linear_fc2.weight", f"{h}mlp.down_proj.weight")]


def _global_pairs() -> list[tuple[str, str]]:
    pairs = [("vision_model.embeddings.class_embedding", "vision_tower.embeddings.cls_token"),
             ("vision_model.embeddings.position_embedding", "vision_tower.embeddings.position_embeddings"),
             ("language_model.decoder.final_layernorm.weight", "language_model.model.norm.weight")]
    for p in ("weight", "bias"):
        pairs += [(f"vision_model.embeddings.patch_embedding.{p}",
                   f"vision_tower.embeddings.patch_embeddings.projection.{p}"),
                  (f"vision_projection.layer_norm.{p}", "multi_modal_projector.layer_norm." + p),
                  (f"vision_projection.linear_fc1.{p}", "multi_modal_projector.linear_1." + p),
                  (f"vision_projection.linear_fc2.{p}", "multi_modal_projector.linear_2." + p)]
    return pairs


def _plain_pairs(cfg: VLMConfig) -> list[tuple[str, str]]:
    pairs = _global_pairs()
    for i in range(cfg.vision.num_layers):
        pairs += _vision_pairs(cfg, i)
    for i in range(cfg.language.num_layers):
        pairs += _language_pairs(i)
    return pairs


@dataclass(frozen=True, slots=True)
class FusedQKV:
    """One fused ``linear_qkv`` and the q/k/v_proj tensors it is made of."""

    mcore: str  # ...self_attention.linear_qkv
    hf: str  # the module holding q_proj, k_proj, v_proj
    groups: int  # query groups as allocated (ViT: one per head, zero heads included)
    q_rows: int  # rows of q per group
    kv_rows: int  # rows of k, and of v, per group
    real_rows: tuple[int, int, int]  # rows of q, k, v on the Hugging Face side
    params: tuple[str, ...]


def _fused_qkvs(cfg: VLMConfig) -> list[FusedQKV]:
    v, lang = cfg.vision, cfg.language
    vis = [FusedQKV(f"vision_model.decoder.layers.{i}.self_attention.linear_qkv",
                    f"vision_tower.encoder.layer.{i}.attention", v.heads, v.head_dim, v.head_dim,
                    (v.num_attention_heads * v.head_dim,) * 3,
                    ("weight", "bias") if v.qkv_bias else ("weight",))
           for i in range(v.num_layers)]
    d, groups = lang.head_dim, lang.num_query_groups
    q_rows = lang.num_attention_heads // groups * d
    return vis + [FusedQKV(f"language_model.decoder.layers.{i}.self_attention.linear_qkv",
                           f"language_model.model.layers.{i}.self_attn", groups, q_rows, d,
                           (groups * q_rows, groups * d, groups * d), ("weight", "bias"))
                  for i in range(lang.num_layers)]


def hf_to_mcore(cfg: VLMConfig) -> RuleTable:
    """Rules building every `FlemingVLM` (TP=1, PP=1) tensor from transformers-named tensors.

    ``output_layer.weight`` is built even when tied: pipeline-parallel last stages hold a copy.
    """
    v = cfg.vision
    rules: RuleTable = {m: rename(h) for m, h in _plain_pairs(cfg)}
    pad_vocab = partial(_pad_rows, cfg.language.padded_vocab_size)
    rules[MCORE_EMBED] = TensorRule((EMBED_TOKENS,), pad_vocab)
    head = EMBED_TOKENS if cfg.language.tie_word_embeddings else LM_HEAD
    rules[MCORE_OUTPUT] = TensorRule((head,), pad_vocab)
    padded_width = v.heads * v.head_dim
    for i in range(v.num_layers):
        m, h = f"vision_model.decoder.layers.{i}.", f"vision_tower.encoder.layer.{i}."
        rules[f"{m}self_attention.linear_proj.weight"] = TensorRule(
            (f"{h}attention.projection_layer.weight",), partial(_pad_cols, padded_width))
        if v.qk_norm:
            for n in "qk":
                rules[f"{m}self_attention.{n}_layernorm.weight"] = TensorRule(
                    (f"{h}attention.{n}_norm.weight",), partial(_pad_rows, padded_width))
    for i in range(cfg.language.num_layers):
        m, h = f"language_model.decoder.layers.{i}.", f"language_model.model.layers.{i}."
        rules[f"{m}mlp.linear_fc1.weight"] = TensorRule(
            (f"{h}mlp.gate_proj.weight", f"{h}mlp.up_proj.weight"), _cat_rows)
    for f in _fused_qkvs(cfg):
        for p in f.params:
            rules[f"{f.mcore}.{p}"] = TensorRule(tuple(f"{f.hf}.{n}_proj.{p}" for n in "qkv"),
                                                 partial(_fuse_qkv, f.groups, f.q_rows, f.kv_rows))
    return rules


def mcore_to_hf(cfg: VLMConfig) -> RuleTable:
    """Rules building every transformers-named tensor from the `FlemingVLM` (TP=1, PP=1) tensors."""
    v = cfg.vision
    rules: RuleTable = {h: rename(m) for m, h in _plain_pairs(cfg)}
    strip_vocab = partial(_first_rows, cfg.language.vocab_size)
    rules[EMBED_TOKENS] = TensorRule((MCORE_EMBED,), strip_vocab)
    if not cfg.language.tie_word_embeddings:
        rules[LM_HEAD] = TensorRule((MCORE_OUTPUT,), strip_vocab)
    real_width = v.num_attention_heads * v.head_dim
    for i in range(v.num_layers):
        m, h = f"vision_model.decoder.layers.{i}.", f"vision_tower.encoder.layer.{i}."
        rules[f"{h}attention.projection_layer.weight"] = TensorRule(
            (f"{m}self_attention.linear_proj.weight",), partial(_first_cols, real_width))
        if v.qk_norm:
            for n in "qk":
                rules[f"{h}attention.{n}_norm.weight"] = TensorRule(
                    (f"{m}self_attention.{n}_layernorm.weight",), partial(_first_rows, real_width))
    for i in range(cfg.language.num_layers):
        m, h = f"language_model.decoder.layers.{i}.", f"language_model.model.layers.{i}."
        for j, name in enumerate(("gate_proj", "up_proj")):
            rules[f"{h}mlp.{name}.weight"] = TensorRule((f"{m}mlp.linear_fc1.weight",), partial(_half, j))
    for f in _fused_qkvs(cfg):
        for p in f.params:
            for j, n in enumerate("qkv"):
                rules[f"{f.hf}.{n}_proj.{p}"] = TensorRule(
                    (f"{f.mcore}.{p}",), partial(_qkv_part, f.groups, f.q_rows, f.kv_rows, f.real_rows, j))
    return rules
