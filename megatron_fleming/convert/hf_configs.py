"""Config translation between the two Hugging Face layouts of InternVL.

The original release's ``InternVLChatConfig`` (config.json with ``vision_config`` as an
``InternVisionConfig``, ``llm_config`` as a ``Qwen2Config`` dict, ``downsample_ratio``,
``select_layer``, ``ps_version``, ``force_image_size`` ...) <-> transformers' ``InternVLConfig``
(``vision_config``, ``text_config``, ``image_token_id``), field by field as transformers'
``convert_internvl_weights_to_hf.py`` maps them.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

# The Qwen2 text model of InternVL3 uses <IMG_CONTEXT> = 151667 (transformers' conversion script).
QWEN2_IMG_CONTEXT_ID = 151667

# Fields the original config carries that transformers' config has no place for; they are kept
# in the Megatron checkpoint so a round trip writes them back unchanged.
_CHAT_DEFAULTS: dict[str, Any] = {
    "template": "internvl2_5",
    "dynamic_image_size": True,
    "use_thumbnail": True,
    "min_dynamic_patch": 1,
    "max_dynamic_patch": 12,
    "pad2square": False,
    "use_backbone_lora": 0,
    "use_llm_lora": 0,
}


# PretrainedConfig bookkeeping that says nothing about the Qwen2 model.
_GENERIC_CONFIG_KEYS = {"id2label", "label2id", "problem_type", "chunk_size_feed_forward",
                        "is_encoder_decoder", "output_hidden_states", "output_attentions",
                        "return_dict", "dtype", "transformers_version", "_name_or_path"}


def _as_int(size: Any) -> int:
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ValueError(f"InternViT needs square images and patches, got {size}")
        return int(size[0])
    return int(size)


def config_from_internvl_chat(chat: dict[str, Any], image_token_id: int) -> InternVLConfig:
    """transformers' InternVLConfig for an original ``InternVLChatConfig`` dict."""
    if chat.get("ps_version", "v1") != "v2":
        raise ValueError(
            f"ps_version={chat.get('ps_version')!r}: only InternVL's 'v2' pixel shuffle (the one "
            "transformers implements) is supported; 'v1' transposes the feature map"
        )
    vis = chat["vision_config"]
    # deep copy: transformers' configs edit nested dicts they are given (rope_scaling)
    llm = copy.deepcopy({k: v for k, v in chat["llm_config"].items() if not k.startswith("_")})
    arch = (llm.get("architectures") or ["?"])[0]
    if arch != "Qwen2ForCausalLM":
        raise ValueError(f"llm_config.architectures={arch!r}: only Qwen2ForCausalLM is supported")
    image_size = chat.get("force_image_size") or vis["image_size"]
    vision = InternVLVisionConfig(
        hidden_size=vis["hidden_size"],
        intermediate_size=vis["intermediate_size"],
        num_hidden_layers=vis["num_hidden_layers"],
        num_attention_heads=vis["num_attention_heads"],
        num_channels=vis.get("num_channels", 3),
        image_size=_as_int(image_size),
        patch_size=_as_int(vis["patch_size"]),
        attention_bias=vis.get("qkv_bias", False),
        use_qk_norm=vis.get("qk_normalization", False),
        norm_type=vis.get("norm_type", "rms_norm"),
        layer_norm_eps=vis.get("layer_norm_eps", 1e-6),
        hidden_act=vis.get("hidden_act", "gelu"),
        layer_scale_init_value=vis.get("initializer_factor", 0.1),
        initializer_range=vis.get("initializer_range", 0.02),
        attention_dropout=vis.get("attention_dropout", 0.0),
        projection_dropout=vis.get("dropout", 0.0),
        use_absolute_position_embeddings=True,
    )
    text = Qwen2Config(**llm)
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        image_seq_length=int((vision.image_size[0] // vision.patch_size[0]) ** 2
                             * chat.get("downsample_ratio", 0.5) ** 2),
        downsample_ratio=chat.get("downsample_ratio", 0.5),
        vision_feature_layer=chat.get("select_layer", -1),
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        tie_word_embeddings=bool(text.tie_word_embeddings),
    )


def internvl_chat_from_config(cfg: InternVLConfig, extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """An original ``InternVLChatConfig`` dict for transformers' InternVLConfig.

    `extras` are the original-only fields (template, dynamic tiling...) recorded when the weights
    came from the original layout; InternVL3's released values otherwise. ``image_token_id`` is
    kept as an extra top-level field: the original config has no slot for the ``<IMG_CONTEXT>``
    id (its tokenizer holds it), and remote code ignores unknown fields.
    """
    v = cfg.vision_config
    image_size = _as_int(v.image_size)
    llm = {k: x for k, x in cfg.text_config.to_dict().items() if k not in _GENERIC_CONFIG_KEYS}
    llm["architectures"] = ["Qwen2ForCausalLM"]
    llm["tie_word_embeddings"] = bool(cfg.tie_word_embeddings)
    rope = llm.get("rope_parameters") or {}
    if "rope_theta" in rope:  # the original remote code reads these names (transformers 4.x)
        llm["rope_theta"] = rope["rope_theta"]
    if rope.get("rope_type", "default") != "default":
        llm["rope_scaling"] = {k: x for k, x in rope.items() if k != "rope_theta"}
    chat = {
        "architectures": ["InternVLChatModel"],
        "model_type": "internvl_chat",
        "downsample_ratio": cfg.downsample_ratio,
        "force_image_size": image_size,
        "ps_version": "v2",
        "select_layer": cfg.vision_feature_layer,
        **_CHAT_DEFAULTS,
        **(extras or {}),
        "tie_word_embeddings": bool(cfg.tie_word_embeddings),
        "image_token_id": cfg.image_token_id,
        "llm_config": llm,
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_hidden_layers": v.num_hidden_layers,
            "num_attention_heads": v.num_attention_heads,
            "num_channels": v.num_channels,
            "image_size": image_size,
            "patch_size": _as_int(v.patch_size),
            "qkv_bias": v.attention_bias,
            "qk_normalization": v.use_qk_norm,
            "norm_type": v.norm_type,
            "layer_norm_eps": v.layer_norm_eps,
            "hidden_act": v.hidden_act,
            "initializer_factor": v.layer_scale_init_value,
            "initializer_range": v.initializer_range,
            "attention_dropout": v.attention_dropout,
            "dropout": v.projection_dropout,
            "drop_path_rate": 0.0,
            "use_flash_attn": False,
        },
    }
    return chat


def chat_extras(chat: dict[str, Any]) -> dict[str, Any]:
    return {k: chat[k] for k in _CHAT_DEFAULTS if k in chat}
