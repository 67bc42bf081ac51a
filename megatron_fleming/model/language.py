"""Qwen2.5 as a megatron-core GPTModel (RMSNorm, SwiGLU, GQA, QKV bias, RoPE theta = 1e6).

The layer spec is megatron's own GPT spec (local or Transformer Engine), so the language model is
exactly what Megatron-LM trains; only the rotary path differs: `position_embedding_type='mrope'`
with the whole rotary dimension in one section, which is 1-D RoPE that accepts V2PE's fractional
fp32 positions (see `v2pe`).
"""

from __future__ import annotations

from megatron.core.models.gpt.gpt_layer_specs import (
    get_gpt_layer_local_spec,
    get_gpt_layer_with_transformer_engine_spec,
)
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_fleming.model.config import LanguageConfig
from megatron_fleming.model.packed import PackedDotProductAttention
from megatron_fleming.model.vision_layers import TransformerImpl, require_transformer_engine


def qwen2_layer_spec(impl: TransformerImpl = "local") -> ModuleSpec:
    if impl == "local":
        spec = get_gpt_layer_local_spec(normalization="RMSNorm", qk_layernorm=False)
        # Packed rows arrive as THD params on CPU too (see `packed`).
        spec.submodules.self_attention.submodules.core_attention = PackedDotProductAttention
        return spec
    require_transformer_engine()
    return get_gpt_layer_with_transformer_engine_spec(qk_layernorm=False)


def build_language_model(config: TransformerConfig, lang: LanguageConfig, *, pre_process: bool,
                         post_process: bool, impl: TransformerImpl = "local",
                         vp_stage: int | None = None) -> GPTModel:
    """One pipeline stage of the decoder. The VLM scatters sequence-parallel input itself, after
    image features have been merged into the embeddings."""
    return GPTModel(
        config=config,
        transformer_layer_spec=qwen2_layer_spec(impl),
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
