"""`FlemingVLM`: one pipeline stage of the InternVL3-style model.

Stage 0 holds InternViT, the projector and the token embedding: image tiles are encoded, pixel
unshuffled to 256 tokens per 448 tile, projected, and written in order over the embeddings of the
`<IMG_CONTEXT>` tokens (row by row, left to right, as transformers' `masked_scatter` does). Every
stage runs its share of the Qwen2.5 decoder with V2PE positions; the last stage returns logits or
per-token losses. Between stages megatron's schedules move activations (`set_input_tensor`).

Packing: a batch of one row holding several sequences, delimited by `cu_seqlens`. Positions
restart per sequence; attention is block-diagonal causal through THD `PackedSeqParams` whose
boundaries also cover the trailing padding (`packed`), the same params with Transformer Engine
(GPU) and local layers (CPU).

Generation (`megatron_fleming.generate`) calls `embed` once per prompt batch (the vision encoder
runs there, once) and then `forward` with `decoder_input` (those embeddings, or one token's) and
megatron's `StaticInferenceContext` holding the KV cache; `position_ids` then cover the whole
cached sequence, because megatron's static path caches keys before rotary and rotates all of them
at every step.
"""

from __future__ import annotations

import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.transformer.enums import ModelType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import build_module

from megatron_fleming.model.config import ParallelConfig, VLMConfig
from megatron_fleming.model.language import build_language_model
from megatron_fleming.model.packed import packed_seq_params as thd_params
from megatron_fleming.model.pixel_shuffle import pixel_unshuffle
from megatron_fleming.model.projector import projector_spec
from megatron_fleming.model.transformer_config import (
    language_transformer_config,
    projector_transformer_config,
    vision_transformer_config,
)
from megatron_fleming.model.v2pe import mrope_position_ids, v2pe_position_ids
from megatron_fleming.model.vision import InternViT

IGNORE_INDEX = -100


class FlemingVLM(MegatronModule):
    """InternViT -> pixel unshuffle -> projector -> Qwen2.5, one pipeline stage of it."""

    def __init__(self, cfg: VLMConfig, par: ParallelConfig, *, pre_process: bool = True,
                 post_process: bool = True, vp_stage: int | None = None) -> None:
        language_config = language_transformer_config(cfg, par)
        super().__init__(config=language_config)
        self.cfg, self.par = cfg, par
        self.pre_process, self.post_process, self.vp_stage = pre_process, post_process, vp_stage
        self.share_embeddings_and_output_weights = cfg.language.tie_word_embeddings
        self.model_type = ModelType.encoder_or_decoder  # read by megatron's schedules
        self.vision_model = self.vision_projection = None
        if pre_process:
            impl = par.transformer_impl
            self.vision_model = InternViT(vision_transformer_config(cfg.vision, par), cfg.vision, impl)
            factor = cfg.projector.unshuffle_factor
            self.vision_projection = build_module(
                projector_spec(impl), config=projector_transformer_config(cfg, par),
                input_size=cfg.vision.hidden_size * factor * factor,
                output_size=cfg.language.hidden_size, norm_eps=cfg.projector.norm_eps)
        self.language_model = build_language_model(
            language_config, cfg.language, pre_process=pre_process, post_process=post_process,
            impl=par.transformer_impl, vp_stage=vp_stage)

    def set_input_tensor(self, input_tensor) -> None:
        self.language_model.set_input_tensor(input_tensor)

    def shared_embedding_or_output_weight(self) -> torch.Tensor | None:
        return self.language_model.shared_embedding_or_output_weight()

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[tiles, C, H, W] -> [tiles, tokens_per_tile, Dl]."""
        patches = self.vision_model(pixel_values)
        tokens = pixel_unshuffle(patches, self.cfg.projector.unshuffle_factor)
        return self.vision_projection(tokens)

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None) -> torch.Tensor:
        """Decoder input [s, b, Dl] (stage 0): token embeddings with image features merged in."""
        return self._embed(input_ids, pixel_values)

    def _embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None) -> torch.Tensor:
        embeddings = self.language_model.embedding(input_ids=input_ids, position_ids=None)
        slots = input_ids == self.cfg.image_context_token_id
        num_slots = int(slots.sum())
        if pixel_values is None or pixel_values.shape[0] == 0:
            if num_slots:
                raise ValueError(f"{num_slots} <IMG_CONTEXT> tokens but no pixel_values")
            return embeddings
        features = self.image_features(pixel_values)
        if features.shape[0] * features.shape[1] != num_slots:
            raise ValueError(
                f"{features.shape[0]} tiles give {features.shape[0] * features.shape[1]} image "
                f"tokens but input_ids hold {num_slots} <IMG_CONTEXT> tokens "
                f"(id {self.cfg.image_context_token_id}); each tile needs "
                f"{self.cfg.tokens_per_tile}")
        merged = embeddings.transpose(0, 1).masked_scatter(
            slots.unsqueeze(-1), features.to(embeddings.dtype))
        return merged.transpose(0, 1).contiguous()

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None, *,
                position_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None,
                cu_seqlens: torch.Tensor | None = None,
                runtime_gather_output: bool | None = None,
                decoder_input: torch.Tensor | None = None,
                inference_context=None) -> torch.Tensor:
        """Logits [b, s, vocab / TP] (labels None), else per-token loss [b, s], 0 where ignored.

        input_ids [b, s] are needed on every stage (they define V2PE positions when
        `position_ids` is None); pixel_values only on stage 0. `labels` are next-token targets
        aligned with input_ids, IGNORE_INDEX (-100) where no loss is taken. `position_ids` is
        keyword-only: Float16Module casts positional float inputs to bf16, which would round them.

        Generation: `decoder_input` ([s, b, Dl], from `embed`) replaces embedding on stage 0;
        with `inference_context` (megatron's `StaticInferenceContext`, the KV cache) input_ids
        are this step's tokens and `position_ids` [b, cached + s] those of every cached token.
        """
        if inference_context is not None and position_ids is None:
            raise ValueError("generation with a KV cache needs position_ids of the whole cache")
        if position_ids is None:
            position_ids = v2pe_position_ids(input_ids, self.cfg.image_context_token_id,
                                             self.cfg.v2pe_delta, cu_seqlens)
        packed_seq_params = None
        if cu_seqlens is not None:
            packed_seq_params = thd_params(cu_seqlens, input_ids.shape[1])
            attention_mask = None
        if self.pre_process and decoder_input is None:
            decoder_input = self._embed(input_ids, pixel_values)
            if self.config.sequence_parallel:
                decoder_input = tensor_parallel.scatter_to_sequence_parallel_region(decoder_input)
        targets = None if labels is None else labels.clamp(min=0)
        padded = self.cfg.language.padded_vocab_size > self.cfg.language.vocab_size
        output = self.language_model(
            input_ids=input_ids, position_ids=mrope_position_ids(position_ids),
            attention_mask=attention_mask, decoder_input=decoder_input,
            labels=None if padded else targets, packed_seq_params=packed_seq_params,
            runtime_gather_output=runtime_gather_output, inference_context=inference_context)
        if not self.post_process:
            return output
        if padded:
            output = self._mask_vocab_padding(output, gathered=bool(runtime_gather_output))
            if labels is None:
                return output
            output = tensor_parallel.vocab_parallel_cross_entropy(
                output.transpose(0, 1).contiguous(), targets.transpose(0, 1).contiguous()
            ).transpose(0, 1)
        if labels is not None:
            output = output * (labels != IGNORE_INDEX)
        return output

    def _mask_vocab_padding(self, logits: torch.Tensor, gathered: bool) -> torch.Tensor:
        """Padding rows of the LM head must never win: their logits become the dtype's minimum."""
        width = logits.shape[-1]
        start = 0 if gathered else width * parallel_state.get_tensor_model_parallel_rank()
        columns = torch.arange(start, start + width, device=logits.device)
        return logits.masked_fill(columns >= self.cfg.language.vocab_size,
                                  torch.finfo(logits.dtype).min)
