"""Model configs: presets, Hugging Face config mapping, validation messages that name the fix."""

from __future__ import annotations

import pytest
from transformers import InternVLConfig, Qwen2Config
from transformers.models.internvl.configuration_internvl import InternVLVisionConfig

from megatron_fleming.model.config import (
    LanguageConfig,
    ParallelConfig,
    ProjectorConfig,
    VisionConfig,
    VLMConfig,
)
from megatron_fleming.model.presets import load_preset, preset_names
from megatron_fleming.model.transformer_config import vision_transformer_config


def test_every_preset_loads():
    assert {"fleming-vl-8b", "fleming-vl-38b", "small", "tiny", "tiny-6b"} <= set(preset_names())
    for name in preset_names():
        load_preset(name)


def test_8b_preset_is_internvit_300m_plus_qwen25_7b():
    cfg = load_preset("fleming-vl-8b")
    assert (cfg.vision.hidden_size, cfg.vision.num_layers, cfg.vision.heads) == (1024, 24, 16)
    assert cfg.vision.norm == "layernorm" and cfg.vision.qkv_bias and not cfg.vision.qk_norm
    lang = cfg.language
    assert (lang.hidden_size, lang.num_layers, lang.num_attention_heads, lang.num_query_groups,
            lang.ffn_hidden_size) == (3584, 28, 28, 4, 18944)
    assert lang.rope_theta == 1e6 and not lang.tie_word_embeddings
    assert cfg.tokens_per_tile == 256
    assert lang.padded_vocab_size % 128 == 0 and lang.padded_vocab_size >= lang.vocab_size


def test_38b_preset_is_internvit_6b_plus_qwen25_32b():
    cfg = load_preset("fleming-vl-38b")
    vision = cfg.vision
    assert (vision.hidden_size, vision.num_layers, vision.num_attention_heads) == (3200, 45, 25)
    assert vision.heads == 32 and vision.head_dim == 128
    assert vision.norm == "rmsnorm" and vision.qk_norm and not vision.qkv_bias
    lang = cfg.language
    assert (lang.hidden_size, lang.num_layers, lang.num_attention_heads, lang.num_query_groups,
            lang.ffn_hidden_size) == (5120, 64, 40, 8, 27648)
    assert cfg.tokens_per_tile == 256


def test_preset_override_and_unknown_name():
    assert load_preset("tiny", v2pe_delta=0.25).v2pe_delta == 0.25
    with pytest.raises(KeyError, match="available"):
        load_preset("no-such-model")


def _hf_config(**vision):
    return InternVLConfig(
        vision_config=InternVLVisionConfig(hidden_size=48, num_hidden_layers=2,
                                           num_attention_heads=3, intermediate_size=64,
                                           image_size=56, patch_size=14, **vision),
        text_config=Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, intermediate_size=128, vocab_size=128,
                                rope_parameters={"rope_type": "default", "rope_theta": 5e5}),
        image_token_id=7, tie_word_embeddings=False)


def test_from_transformers_config():
    cfg = VLMConfig.from_hf(_hf_config(norm_type="rms_norm", use_qk_norm=True,
                                       attention_bias=False, layer_norm_eps=1e-5),
                            num_padded_heads=4, v2pe_delta=0.5)
    assert cfg.vision == VisionConfig(hidden_size=48, num_layers=2, num_attention_heads=3,
                                      ffn_hidden_size=64, image_size=56, patch_size=14,
                                      norm="rmsnorm", norm_eps=1e-5, qkv_bias=False, qk_norm=True,
                                      layer_scale_init=0.1, num_padded_heads=4)
    assert cfg.language == LanguageConfig(hidden_size=64, num_layers=2, num_attention_heads=4,
                                          num_query_groups=2, ffn_hidden_size=128, vocab_size=128,
                                          max_position_embeddings=32768, rope_theta=5e5)
    assert (cfg.image_context_token_id, cfg.v2pe_delta, cfg.tokens_per_tile) == (7, 0.5, 4)


def test_from_original_internvl_release_config():
    release = {
        "downsample_ratio": 0.5, "select_layer": -1, "ps_version": "v2", "force_image_size": 448,
        "vision_config": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                          "intermediate_size": 4096, "image_size": 448, "patch_size": 14,
                          "qkv_bias": True, "qk_normalization": False, "norm_type": "layer_norm",
                          "layer_norm_eps": 1e-6, "initializer_factor": 0.1, "hidden_act": "gelu"},
        "llm_config": {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
                       "num_key_value_heads": 4, "intermediate_size": 18944,
                       "vocab_size": 151674, "rope_theta": 1e6, "rms_norm_eps": 1e-6,
                       "hidden_act": "silu", "tie_word_embeddings": False},
    }
    cfg = VLMConfig.from_internvl_chat(release, vocab_pad_multiple=128 * 2)  # as converted at TP2
    preset = load_preset("fleming-vl-8b")
    assert cfg.vision == preset.vision
    assert cfg.language == preset.language
    assert cfg.image_context_token_id == 151667


def test_unsupported_hf_fields_are_refused_with_reason():
    with pytest.raises(ValueError, match="vision_feature_layer"):
        VLMConfig.from_hf(InternVLConfig(vision_feature_layer=-2))
    release = {"ps_version": "v1", "vision_config": {}, "llm_config": {}}
    with pytest.raises(ValueError, match="ps_version"):
        VLMConfig.from_internvl_chat(release)


@pytest.mark.parametrize("kwargs, fix", [
    (dict(hidden_size=30, num_attention_heads=4), "multiple of"),
    (dict(num_attention_heads=4, num_padded_heads=6, qkv_bias=True), "qkv_bias=False"),
    (dict(num_attention_heads=4, num_padded_heads=2), "at least"),
    (dict(num_attention_heads=4, norm="batchnorm"), "'layernorm'"),
])
def test_vision_config_errors_name_the_fix(kwargs, fix):
    base = dict(hidden_size=32, num_layers=1, num_attention_heads=4, ffn_hidden_size=64)
    with pytest.raises(ValueError, match=fix):
        VisionConfig(**{**base, **kwargs})


def test_vision_heads_not_divisible_by_tp_suggests_padding():
    vision = VisionConfig(hidden_size=75, num_layers=1, num_attention_heads=25, ffn_hidden_size=8,
                          qkv_bias=False)
    with pytest.raises(ValueError, match=r"num_padded_heads .*e\.g\. 28"):
        vision_transformer_config(vision, ParallelConfig(tensor_parallel=4))


def test_context_parallel_is_refused_naming_the_setting():
    for device, impl in (("cpu", "local"), ("cuda", "transformer_engine")):
        with pytest.raises(ValueError, match="parallel.context_parallel is 2: context parallelism"):
            ParallelConfig(device=device, transformer_impl=impl, context_parallel=2)
    with pytest.raises(ValueError, match="parallel.extra sets \\['context_parallel_size'\\]"):
        ParallelConfig(extra={"context_parallel_size": 2})
    with pytest.raises(ValueError, match="transformer_impl='local'"):
        ParallelConfig(transformer_impl="transformer_engine")
    # Sequence parallelism runs with local layers too (tested against TP1 in test_model_parallel).
    ParallelConfig(tensor_parallel=2, sequence_parallel=True)
    with pytest.raises(ValueError, match="sequence_parallel needs tensor_parallel > 1"):
        ParallelConfig(sequence_parallel=True)


def test_projector_and_vlm_validation():
    with pytest.raises(ValueError, match="1/k"):
        ProjectorConfig(downsample_ratio=0.3)
    tiny = load_preset("tiny")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        VLMConfig(vision=tiny.vision, projector=tiny.projector, language=tiny.language,
                  image_context_token_id=10_000)
    with pytest.raises(ValueError, match="unknown VLMConfig keys"):
        VLMConfig.from_dict({**tiny.to_dict(), "extra": 1})


def test_uneven_pipeline_split():
    par = ParallelConfig(pipeline_parallel=3, first_stage_layers=4)
    assert par.language_layers_per_stage(64) == [4, 30, 30]
    assert ParallelConfig(pipeline_parallel=2).language_layers_per_stage(64) == [32, 32]
    with pytest.raises(ValueError, match="first_stage_layers \\(5\\) leaves 59 of 64"):
        ParallelConfig(pipeline_parallel=3, first_stage_layers=5).language_layers_per_stage(64)
    with pytest.raises(ValueError, match="needs pipeline_parallel > 1"):
        ParallelConfig(first_stage_layers=4)
    with pytest.raises(ValueError, match="set parallel.first_stage_layers"):
        ParallelConfig(pipeline_parallel=3).language_layers_per_stage(64)
