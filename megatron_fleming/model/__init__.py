"""Fleming-VL (InternVL3 architecture) built from megatron-core ModuleSpecs.

    pixel_values -> InternViT (CLS dropped) -> pixel unshuffle (x0.5) -> projector
                 -> replaces the <IMG_CONTEXT> token embeddings, in order
    input_ids    -> Qwen2.5 GPTModel with V2PE positions (fp32, fed to RoPE unrounded)

Modules: `config` (typed configs), `hf_config` (configs from Hugging Face InternVL), `vision` +
`vision_layers` (InternViT), `pixel_shuffle`, `projector`, `language` (Qwen2.5 GPTModel), `v2pe`
(positions + rotary), `vlm` (`FlemingVLM`, a pipeline stage), `freeze`, `presets`, `parallel`
(parallel state, building per stage, DDP).

State-dict layout (`FlemingVLM.state_dict()` of a TP=1, PP=1 model; stable names)
---------------------------------------------------------------------------------
Dv, Dl: vision / language hidden; Hv: vision heads *allocated* (`VisionConfig.heads`, real +
zero padding), hv = Dv / real heads; H, G, d: language heads, query groups, head dim; F: FFN size.

vision_model.embeddings.class_embedding                          [1, 1, Dv]
vision_model.embeddings.patch_embedding.{weight,bias}            [Dv, 3, 14, 14], [Dv]  (Conv2d)
vision_model.embeddings.position_embedding                       [1, 1 + (448/14)^2, Dv]
vision_model.decoder.layers.{i}.input_layernorm.{weight,bias}    [Dv] (RMSNorm: weight only)
vision_model.decoder.layers.{i}.self_attention.linear_qkv.weight [3*Hv*hv, Dv]
    fused, grouped PER HEAD: rows [q_h0, k_h0, v_h0, q_h1, k_h1, v_h1, ...], hv rows each;
    padded heads are all-zero rows at the end (heads >= real heads)
vision_model.decoder.layers.{i}.self_attention.linear_qkv.bias   [3*Hv*hv] same order (300M only)
vision_model.decoder.layers.{i}.self_attention.q_layernorm.weight [Hv*hv] (6B only; RMS over the
vision_model.decoder.layers.{i}.self_attention.k_layernorm.weight [Hv*hv]  real Dv channels of all
    heads, as InternViT's q_norm/k_norm; entries of padded heads are unused)
vision_model.decoder.layers.{i}.self_attention.linear_proj.{weight,bias} [Dv, Hv*hv], [Dv]
    (input columns of padded heads are zero)
vision_model.decoder.layers.{i}.pre_mlp_layernorm.{weight,bias}  [Dv]
vision_model.decoder.layers.{i}.mlp.linear_fc1.{weight,bias}     [Fv, Dv], [Fv]
vision_model.decoder.layers.{i}.mlp.linear_fc2.{weight,bias}     [Dv, Fv], [Dv]
vision_model.decoder.layers.{i}.ls1 / .ls2                       [Dv] layer scale (HF lambda_1/2)
vision_projection.layer_norm.{weight,bias}                       [4*Dv]   (InternVL mlp1.0)
vision_projection.linear_fc1.{weight,bias}                       [Dl, 4*Dv] (mlp1.1)
vision_projection.linear_fc2.{weight,bias}                       [Dl, Dl]   (mlp1.3)
language_model.embedding.word_embeddings.weight                  [Vp, Dl]
    Vp = `LanguageConfig.padded_vocab_size` >= vocab_size V: rows >= V are padding (fill zeros on
    import, drop on export); their logits are masked to the dtype's minimum
language_model.decoder.layers.{i}.input_layernorm.weight         [Dl]
language_model.decoder.layers.{i}.self_attention.linear_qkv.{weight,bias} [(H + 2G)*d, Dl]
    fused, grouped PER QUERY GROUP: for g in 0..G-1: [q of the H/G heads of group g (H/G*d rows),
    k_g (d rows), v_g (d rows)]
language_model.decoder.layers.{i}.self_attention.linear_proj.weight [Dl, H*d] (no bias)
language_model.decoder.layers.{i}.pre_mlp_layernorm.weight       [Dl]
language_model.decoder.layers.{i}.mlp.linear_fc1.weight          [2F, Dl] = cat(gate_proj, up_proj)
    (SwiGLU: silu(first half) * second half)
language_model.decoder.layers.{i}.mlp.linear_fc2.weight          [Dl, F]  (down_proj)
language_model.decoder.final_layernorm.weight                    [Dl]
language_model.output_layer.weight                               [Vp, Dl] (absent if tied, PP=1)

Every megatron linear also has a `<name>._extra_state` entry (None; Transformer Engine's FP8
metadata slot): drop those keys when exporting and load with `strict=False` (then check that only
`_extra_state` keys are reported missing). With TP=1/PP=1 this mapping of a transformers
`InternVLForConditionalGeneration` (q/k/v_proj stacked per head / per group, padded with zero
heads where `num_padded_heads` asks, lambda_1/2 -> ls1/2, gate/up concatenated) gives logits equal
to transformers' in fp32 (max abs diff ~2e-6 on tiny random models, 300M- and 6B-style).

Tensor parallelism splits linear_qkv / linear_fc1 rows and linear_proj / linear_fc2 columns
contiguously per rank (so a rank holds whole heads / query groups, and linear_fc1 holds
[gate_r; up_r] locally); q/k_layernorm weights split like the heads. Pipeline stage 0 holds
vision_model, vision_projection and the embedding; layers are numbered locally per stage.
Megatron dist-checkpoints (`model.sharded_state_dict()`) are TP/PP-independent: layers are stacked
along a leading axis, linear_fc1 is stored as global [gate; up], and the language layers' norms are
stored under Transformer-Engine names (`input_layernorm.` -> `self_attention.linear_qkv.layer_norm_`,
`pre_mlp_layernorm.` -> `mlp.linear_fc1.layer_norm_`), as megatron's own GPT specs do. The simplest
way to write one is to fill `state_dict()` of a TP=1/PP=1 model and save `sharded_state_dict()`.

Numerics match transformers' InternVL in fp32: LayerNorm/RMSNorm eps from the config (vision
1e-6, projector LayerNorm 1e-5, language RMSNorm 1e-6), exact (erf) GELU in the ViT MLP and the
projector, softmax scale 1/sqrt(head_dim), RoPE non-interleaved (rotate_half).
"""

from megatron_fleming.model.config import (
    LanguageConfig,
    ParallelConfig,
    ProjectorConfig,
    VisionConfig,
    VLMConfig,
)

__all__ = ["LanguageConfig", "ParallelConfig", "ProjectorConfig", "VLMConfig", "VisionConfig"]
