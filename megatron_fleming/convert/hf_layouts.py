"""The two Hugging Face layouts of an InternVL checkpoint, and the exact renaming between them.

- ``internvl``: the original release (OpenGVLab/InternVL3-8B, and the Fleming-VL weights):
  ``InternVLChatModel`` with ``vision_model.*`` (InternViT: fused ``attn.qkv``, ``ls1/ls2``,
  ``norm1/norm2``), ``mlp1.{0,1,3}`` (LayerNorm, Linear, GELU, Linear) and ``language_model.*``
  (a ``Qwen2ForCausalLM``), with an ``InternVLChatConfig`` config.json (``vision_config``,
  ``llm_config``, ``downsample_ratio``, ``select_layer``, ``ps_version`` ...).
- ``transformers``: transformers' ``InternVLForConditionalGeneration`` as ``save_pretrained``
  writes it: ``vision_tower.*`` (split ``q/k/v_proj``, ``lambda_1/2``, ``layernorm_before/after``),
  ``multi_modal_projector.{layer_norm,linear_1,linear_2}``, ``language_model.model.*`` and
  ``language_model.lm_head.weight``, with an ``InternVLConfig``.

The renaming is the one transformers' ``convert_internvl_weights_to_hf.py`` applies (original ->
transformers) and its exact inverse; InternViT's fused qkv rows are ``[q; k; v]``. Inside this
package the transformers names are the canonical Hugging Face names. Configs: `hf_configs`.
"""

from __future__ import annotations

import enum
from functools import partial
from typing import Any

import torch
from transformers import InternVLConfig, InternVLVisionConfig

from megatron_fleming.convert.tensors import RuleTable, TensorRule, rename


class HFLayout(str, enum.Enum):
    INTERNVL = "internvl"
    TRANSFORMERS = "transformers"


LM_HEAD = "language_model.lm_head.weight"
EMBED_TOKENS = "language_model.model.embed_tokens.weight"


def detect_layout(config: dict[str, Any]) -> HFLayout:
    model_type = config.get("model_type")
    if model_type == "internvl_chat":
        return HFLayout.INTERNVL
    if model_type == "internvl":
        return HFLayout.TRANSFORMERS
    raise ValueError(
        f"config.json has model_type={model_type!r}; expected 'internvl_chat' (original InternVL "
        "release) or 'internvl' (transformers' InternVLForConditionalGeneration)"
    )


def _vision_layer_pairs(v: InternVLVisionConfig, i: int) -> list[tuple[str, str]]:
    """(transformers name, original name) for one InternViT layer, fused qkv excluded."""
    t, o = f"vision_tower.encoder.layer.{i}.", f"vision_model.encoder.layers.{i}."
    norm_params = ("weight", "bias") if v.norm_type == "layer_norm" else ("weight",)
    pairs = [(f"{t}lambda_1", f"{o}ls1"), (f"{t}lambda_2", f"{o}ls2")]
    for p in ("weight", "bias"):
        pairs += [
            (f"{t}attention.projection_layer.{p}", f"{o}attn.proj.{p}"),
            (f"{t}mlp.fc1.{p}", f"{o}mlp.fc1.{p}"),
            (f"{t}mlp.fc2.{p}", f"{o}mlp.fc2.{p}"),
        ]
    for p in norm_params:
        pairs += [(f"{t}layernorm_before.{p}", f"{o}norm1.{p}"), (f"{t}layernorm_after.{p}", f"{o}norm2.{p}")]
    if v.use_qk_norm:
        pairs += [(f"{t}attention.q_norm.weight", f"{o}attn.q_norm.weight"),
                  (f"{t}attention.k_norm.weight", f"{o}attn.k_norm.weight")]
    return pairs


def _text_keys(cfg: InternVLConfig) -> list[str]:
    """Names of the Qwen2 tensors; identical in both layouts (a Qwen2ForCausalLM under language_model)."""
    keys = [EMBED_TOKENS, "language_model.model.norm.weight"]
    if not cfg.tie_word_embeddings:
        keys.append(LM_HEAD)
    for i in range(cfg.text_config.num_hidden_layers):
        p = f"language_model.model.layers.{i}."
        keys += [f"{p}input_layernorm.weight", f"{p}post_attention_layernorm.weight",
                 f"{p}self_attn.o_proj.weight"]
        keys += [f"{p}mlp.{m}_proj.weight" for m in ("gate", "up", "down")]
        keys += [f"{p}self_attn.{m}_proj.{b}" for m in "qkv" for b in ("weight", "bias")]
    return keys


def _renames(cfg: InternVLConfig) -> list[tuple[str, str]]:
    v = cfg.vision_config
    pairs = [
        ("vision_tower.embeddings.cls_token", "vision_model.embeddings.class_embedding"),
        ("vision_tower.embeddings.position_embeddings", "vision_model.embeddings.position_embedding"),
    ]
    for p in ("weight", "bias"):
        pairs += [
            (f"vision_tower.embeddings.patch_embeddings.projection.{p}",
             f"vision_model.embeddings.patch_embedding.{p}"),
            (f"multi_modal_projector.layer_norm.{p}", f"mlp1.0.{p}"),
            (f"multi_modal_projector.linear_1.{p}", f"mlp1.1.{p}"),
            (f"multi_modal_projector.linear_2.{p}", f"mlp1.3.{p}"),
        ]
    for i in range(v.num_hidden_layers):
        pairs += _vision_layer_pairs(v, i)
    pairs += [(k, k) for k in _text_keys(cfg)]
    return pairs


def _qkv_params(v: InternVLVisionConfig) -> tuple[str, ...]:
    return ("weight", "bias") if v.attention_bias else ("weight",)


def _third(index: int, fused: torch.Tensor) -> torch.Tensor:
    return fused.chunk(3, dim=0)[index].clone()


def _cat_rows(*parts: torch.Tensor) -> torch.Tensor:
    return torch.cat(parts, dim=0)


def internvl_to_transformers(cfg: InternVLConfig) -> RuleTable:
    """Rules building every transformers-named tensor from the original release's tensors."""
    rules: RuleTable = {native: rename(orig) for native, orig in _renames(cfg)}
    for i in range(cfg.vision_config.num_hidden_layers):
        for p in _qkv_params(cfg.vision_config):
            fused = f"vision_model.encoder.layers.{i}.attn.qkv.{p}"
            for j, part in enumerate("qkv"):
                rules[f"vision_tower.encoder.layer.{i}.attention.{part}_proj.{p}"] = TensorRule(
                    (fused,), partial(_third, j))
    return rules


def transformers_to_internvl(cfg: InternVLConfig) -> RuleTable:
    """Rules building every original-release tensor from the transformers-named tensors."""
    rules: RuleTable = {orig: rename(native) for native, orig in _renames(cfg)}
    for i in range(cfg.vision_config.num_hidden_layers):
        for p in _qkv_params(cfg.vision_config):
            parts = tuple(f"vision_tower.encoder.layer.{i}.attention.{m}_proj.{p}" for m in "qkv")
            rules[f"vision_model.encoder.layers.{i}.attn.qkv.{p}"] = TensorRule(parts, _cat_rows)
    return rules


_MODULE_TO_DISK = (("model.vision_tower.", "vision_tower."),
                   ("model.multi_modal_projector.", "multi_modal_projector."),
                   ("model.language_model.", "language_model.model."),
                   ("lm_head.", "language_model.lm_head."))


def canonical_transformers_key(key: str) -> str:
    """transformers' module names (``model.vision_tower...``, ``lm_head``) to its on-disk names."""
    for module, disk in _MODULE_TO_DISK:
        if key.startswith(module):
            return disk + key[len(module):]
    return key


def transformers_module_key(key: str) -> str:
    """The inverse: on-disk names to `InternVLForConditionalGeneration.state_dict()` names."""
    for module, disk in _MODULE_TO_DISK:
        if key.startswith(disk):
            return module + key[len(disk):]
    return key
