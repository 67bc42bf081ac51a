"""`VLMConfig` from the two Hugging Face InternVL config layouts.

- transformers' native `InternVLConfig` (`InternVLForConditionalGeneration`, "-hf" repos):
  `vision_config` (InternVLVisionConfig), `text_config` (Qwen2Config), `image_token_id`.
- the original InternVL release's config.json (`InternVLChatConfig`, trust_remote_code; the
  layout the released Fleming-VL weights use): `vision_config`, `llm_config`, `select_layer`.

Only what the model computes is read; a field this model cannot reproduce raises with the reason.
"""

from __future__ import annotations

from typing import Any

from megatron_fleming.model.config import LanguageConfig, ProjectorConfig, VisionConfig, VLMConfig

# The original release stores the <IMG_CONTEXT> id in the tokenizer, not in config.json.
INTERNVL3_IMAGE_CONTEXT_TOKEN_ID = 151667


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if isinstance(cfg, dict) else getattr(cfg, key, default)


def _size(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"non-square size {value} is not supported; InternViT uses square tiles")
        return int(value[0])
    return int(value)


def _rope_theta(text: Any) -> float:
    params = _get(text, "rope_parameters") or {}
    scaling = _get(text, "rope_scaling") or {}
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    # "dynamic" NTK scaling only changes frequencies beyond max_position_embeddings; training
    # sequences stay below it, where it is plain RoPE.
    if rope_type not in ("default", "dynamic"):
        raise ValueError(f"RoPE type {rope_type!r} is not supported; use 'default'")
    theta = params.get("rope_theta", _get(text, "rope_theta"))
    if theta is None:
        raise ValueError("text config has no rope_theta (rope_parameters['rope_theta'])")
    return float(theta)


def _language(text: Any, *, tie_word_embeddings: bool, vocab_pad_multiple: int) -> LanguageConfig:
    if _get(text, "hidden_act", "silu") != "silu":
        raise ValueError(f"language hidden_act {_get(text, 'hidden_act')!r}: Qwen2.5 uses 'silu'")
    if _get(text, "use_sliding_window", False):
        raise ValueError("sliding-window attention is not supported; set use_sliding_window=False")
    heads = int(_get(text, "num_attention_heads"))
    return LanguageConfig(
        hidden_size=int(_get(text, "hidden_size")),
        num_layers=int(_get(text, "num_hidden_layers")),
        num_attention_heads=heads,
        num_query_groups=int(_get(text, "num_key_value_heads") or heads),
        ffn_hidden_size=int(_get(text, "intermediate_size")),
        vocab_size=int(_get(text, "vocab_size")),
        max_position_embeddings=int(_get(text, "max_position_embeddings", 32768)),
        rope_theta=_rope_theta(text),
        norm_eps=float(_get(text, "rms_norm_eps", 1e-6)),
        tie_word_embeddings=tie_word_embeddings,
        vocab_pad_multiple=vocab_pad_multiple,
    )


def _check_act(name: str, value: Any) -> None:
    if value != "gelu":
        raise ValueError(f"{name} is {value!r}; InternVL uses exact 'gelu'")


def vlm_config_from_transformers(hf_config: Any, *, v2pe_delta: float = 1.0,
                                 num_padded_heads: int | None = None,
                                 vocab_pad_multiple: int = 1) -> VLMConfig:
    vision, text = _get(hf_config, "vision_config"), _get(hf_config, "text_config")
    if _get(hf_config, "vision_feature_layer", -1) != -1:
        raise ValueError("vision_feature_layer must be -1 (InternVL3 uses the last ViT layer)")
    if _get(hf_config, "vision_feature_select_strategy", "default") != "default":
        raise ValueError("vision_feature_select_strategy must be 'default' (drop CLS)")
    _check_act("projector_hidden_act", _get(hf_config, "projector_hidden_act", "gelu"))
    _check_act("vision hidden_act", _get(vision, "hidden_act", "gelu"))
    if not _get(vision, "use_mean_pooling", True):
        raise ValueError("use_mean_pooling=False adds a final ViT LayerNorm InternVL3 does not have")
    norm = {"layer_norm": "layernorm", "rms_norm": "rmsnorm"}[_get(vision, "norm_type", "layer_norm")]
    return VLMConfig(
        vision=VisionConfig(
            hidden_size=int(_get(vision, "hidden_size")),
            num_layers=int(_get(vision, "num_hidden_layers")),
            num_attention_heads=int(_get(vision, "num_attention_heads")),
            ffn_hidden_size=int(_get(vision, "intermediate_size")),
            image_size=_size(_get(vision, "image_size")),
            patch_size=_size(_get(vision, "patch_size")),
            num_channels=int(_get(vision, "num_channels", 3)),
            norm=norm,
            norm_eps=float(_get(vision, "layer_norm_eps", 1e-6)),
            qkv_bias=bool(_get(vision, "attention_bias", False)),
            qk_norm=bool(_get(vision, "use_qk_norm", False)),
            layer_scale_init=float(_get(vision, "layer_scale_init_value", 0.1)),
            num_padded_heads=num_padded_heads,
        ),
        projector=ProjectorConfig(downsample_ratio=float(_get(hf_config, "downsample_ratio", 0.5))),
        # transformers ties lm_head to the embedding by the top-level flag.
        language=_language(text, tie_word_embeddings=bool(_get(hf_config, "tie_word_embeddings")),
                           vocab_pad_multiple=vocab_pad_multiple),
        image_context_token_id=int(_get(hf_config, "image_token_id")),
        v2pe_delta=v2pe_delta,
    )


def vlm_config_from_internvl_chat(config: dict[str, Any], *, v2pe_delta: float = 1.0,
                                  num_padded_heads: int | None = None,
                                  vocab_pad_multiple: int = 1) -> VLMConfig:
    vision, llm = config["vision_config"], config["llm_config"]
    if config.get("select_layer", -1) != -1:
        raise ValueError("select_layer must be -1 (InternVL3 uses the last ViT layer)")
    if config.get("ps_version", "v2") != "v2":
        raise ValueError("ps_version must be 'v2' (InternVL3's pixel-shuffle ordering)")
    _check_act("vision hidden_act", vision.get("hidden_act", "gelu"))
    image_size = config.get("force_image_size") or vision["image_size"]
    norm = {"layer_norm": "layernorm", "rms_norm": "rmsnorm"}[vision.get("norm_type", "rms_norm")]
    return VLMConfig(
        vision=VisionConfig(
            hidden_size=int(vision["hidden_size"]),
            num_layers=int(vision["num_hidden_layers"]),
            num_attention_heads=int(vision["num_attention_heads"]),
            ffn_hidden_size=int(vision["intermediate_size"]),
            image_size=_size(image_size),
            patch_size=_size(vision["patch_size"]),
            num_channels=int(vision.get("num_channels", 3)),
            norm=norm,
            norm_eps=float(vision.get("layer_norm_eps", 1e-6)),
            qkv_bias=bool(vision.get("qkv_bias", False)),
            qk_norm=bool(vision.get("qk_normalization", False)),
            layer_scale_init=float(vision.get("initializer_factor", 0.1)),
            num_padded_heads=num_padded_heads,
        ),
        projector=ProjectorConfig(downsample_ratio=float(config.get("downsample_ratio", 0.5))),
        language=_language(llm, tie_word_embeddings=bool(llm.get("tie_word_embeddings", False)),
                           vocab_pad_multiple=vocab_pad_multiple),
        image_context_token_id=int(config.get("img_context_token_id")
                                   or INTERNVL3_IMAGE_CONTEXT_TOKEN_ID),
        v2pe_delta=v2pe_delta,
    )
