"""Qwen2.5 as a megatron-core GPTModel (RMSNorm, SwiGLU, GQA, QKV bias, RoPE theta = 1e6).

The layer spec is megatron's own GPT spec (local or Transformer Engine), so the language model is
exactly what Megatron-LM trains; only the rotary path differs: `position_embedding_type='mrope'`
with the whole rotary dimension in one section, which is 1-D RoPE that accepts V2PE's fractional
fp32 positions (see `v2pe`).
"""

from __future__ import annotations

import torch
from megatron.core.models.gpt.gpt_layer_specs import (
    get_gpt_layer_local_spec,
    get_gpt_layer_with_transformer_engine_spec,
)
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import (
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_fleming.model.config import LanguageConfig
from megatron_fleming.model.packed import PackedDotProductAttention
from megatron_fleming.model.vision_layers import TransformerImpl, require_transformer_engine


class LocalNorm:
    """megatron's `WrappedTorchNorm` (torch RMSNorm / LayerNorm), also under sequence parallelism.

    With sequence parallelism each TP rank normalises its own part of the sequence, so a norm's
    weight gradient is partial; marking the weights ``sequence_parallel`` makes megatron's
    `finalize_model_grads` sum them over TP, as it does for Transformer Engine's norms.
    """

    def __new__(cls, config: TransformerConfig, hidden_size: int, eps: float = 1e-5, **_unused):
        norms = {"RMSNorm": torch.nn.RMSNorm, "LayerNorm": torch.nn.LayerNorm}
        norm = norms[config.normalization](hidden_size, eps=eps)
        for param in norm.parameters():
            param.sequence_parallel = config.sequence_parallel
        return norm


def qwen2_layer_spec(impl: TransformerImpl = "local") -> ModuleSpec:
    if impl == "local":
        spec = get_gpt_layer_local_spec(normalization="RMSNorm", qk_layernorm=False)
        spec.submodules.input_layernorm = spec.submodules.pre_mlp_layernorm = LocalNorm
        # Packed rows arrive as THD params on CPU too (see `packed`).
        spec.submodules.self_attention.submodules.core_attention = PackedDotProductAttention
        return spec
    require_transformer_engine()
    return get_gpt_layer_with_transformer_engine_spec(qk_layernorm=False)


def qwen2_decoder_spec(config: TransformerConfig, impl: TransformerImpl = "local",
                       vp_stage: int | None = None) -> ModuleSpec | TransformerBlockSubmodules:
    """This stage's layers; with local layers, also the final norm (megatron's default for it
    refuses sequence parallelism when Transformer Engine is absent)."""
    layer = qwen2_layer_spec(impl)
    if impl != "local":
        return layer
    count = get_num_layers_to_build(config, vp_stage=vp_stage)
    return TransformerBlockSubmodules(layer_specs=[layer] * count, layer_norm=LocalNorm)


def build_language_model(config: TransformerConfig, lang: LanguageConfig, *, pre_process: bool,
                         post_process: bool, impl: TransformerImpl = "local",
                         vp_stage: int | None = None) -> GPTModel:
    """One pipeline stage of the decoder. The VLM scatters sequence-parallel input itself, after
    image features have been merged into the embeddings."""
    return GPTModel(
        config=config,
        transformer_layer_spec=qwen2_decoder_spec(config, impl, vp_stage),
        vocab_size=lang.padded_vocab_size,
        max_sequence_length=lang.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=True,
        share_embeddings_and_output_weights=lang.tie_word_embeddings,
        position_embedding_type="mrope",
        rotary_base=lang.rope_theta,
        scatter_embedding_sequence_parallel=False,
        vp_stage=vp_stage,
    )
