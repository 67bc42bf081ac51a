"""Check a conversion by running both models: transformers' InternVL on the Hugging Face weights
and `FlemingVLM` on the Megatron checkpoint read back from disk, on the same multi-tile input.

Both run in fp32 whatever the checkpoint dtype (bf16 -> fp32 is exact), so the difference
measures the conversion, not bf16 rounding. The Megatron side runs at the checkpoint's TP/PP
through megatron's own forward schedule; the reference runs on the rank that ends up holding the
logits (last pipeline stage, tensor-parallel rank 0), before the Megatron model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from megatron.core import parallel_state
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_fleming.convert.hf_checkpoint import HFCheckpoint
from megatron_fleming.convert.hf_layouts import EMBED_TOKENS, LM_HEAD, transformers_module_key
from megatron_fleming.convert.mcore_checkpoint import load_checkpoint
from megatron_fleming.model.config import ParallelConfig, VLMConfig
from megatron_fleming.model.parallel import build_model_chunks, unwrap


@dataclass(frozen=True)
class VerificationBatch:
    input_ids: torch.Tensor  # [1, s]
    pixel_values: torch.Tensor  # [tiles, C, H, W]


def verification_batch(cfg: VLMConfig, *, tiles: int = 3, text_tokens: int = 8,
                       seed: int = 0) -> VerificationBatch:
    """Text, then one image of `tiles` tiles (InternVL: 2 tiles + thumbnail), then text."""
    gen = torch.Generator().manual_seed(seed)
    vocab, image_id = cfg.language.vocab_size, cfg.image_context_token_id
    text = torch.randint(0, vocab, (2 * text_tokens,), generator=gen)
    text[text == image_id] = (image_id + 1) % vocab
    image = torch.full((tiles * cfg.tokens_per_tile,), image_id)
    ids = torch.cat([text[:text_tokens], image, text[text_tokens:]])[None]
    size = cfg.vision.image_size
    pixels = torch.randn(tiles, cfg.vision.num_channels, size, size, generator=gen)
    return VerificationBatch(ids, pixels)


def transformers_model(ck: HFCheckpoint, dtype: torch.dtype = torch.float32):
    """transformers' `InternVLForConditionalGeneration` holding the checkpoint's tensors."""
    from transformers import InternVLForConditionalGeneration
    from transformers.initialization import no_init_weights

    with no_init_weights():  # also skips tying: a tied lm_head is given the embedding below
        model = InternVLForConditionalGeneration(ck.config)
    # Cast before loading: sub-configs may carry the release's torch_dtype (bf16), and loading
    # fp32 values into bf16 parameters would round them.
    model.to(dtype)
    state = {transformers_module_key(k): ck.tensors.get(k).to(dtype) for k in ck.tensors.keys()}
    if ck.config.tie_word_embeddings:
        state[transformers_module_key(LM_HEAD)] = state[transformers_module_key(EMBED_TOKENS)]
    model.load_state_dict(state, strict=True)
    return model.eval()


@torch.no_grad()
def reference_logits(ck: HFCheckpoint, batch: VerificationBatch, device: str) -> torch.Tensor:
    model = transformers_model(ck).to(device)
    out = model(input_ids=batch.input_ids.to(device), pixel_values=batch.pixel_values.to(device))
    return out.logits.float().cpu()


@torch.no_grad()
def megatron_logits(model: torch.nn.Module, batch: VerificationBatch, device: str) -> torch.Tensor | None:
    """Full-vocabulary logits [1, s, V] on the last pipeline stage, None on the others."""
    first = parallel_state.is_pipeline_first_stage()

    def step(data_iterator, chunk):
        b = next(data_iterator)
        pixels = b.pixel_values.to(device) if first else None
        return chunk(b.input_ids.to(device), pixels, runtime_gather_output=True), None

    outputs = get_forward_backward_func()(
        forward_step_func=step, data_iterator=iter([batch]), model=[model], num_microbatches=1,
        seq_length=batch.input_ids.shape[1], micro_batch_size=1, forward_only=True)
    return outputs[0].float().cpu() if parallel_state.is_pipeline_last_stage() else None


def holds_logits() -> bool:
    return (parallel_state.is_pipeline_last_stage()
            and parallel_state.get_tensor_model_parallel_rank() == 0)


def verify_on_rank(ck: HFCheckpoint, cfg: VLMConfig, par: ParallelConfig, folder: Path) -> float:
    """Max |logits difference| over the whole input, the same value on every rank.

    Runs inside initialised parallel state; the Megatron model is built in fp32 and loaded from
    `folder`.
    """
    par = ParallelConfig(tensor_parallel=par.tensor_parallel, pipeline_parallel=par.pipeline_parallel,
                         device=par.device, dtype="fp32", transformer_impl=par.transformer_impl)
    batch = verification_batch(cfg)
    reference = reference_logits(ck, batch, par.device) if holds_logits() else None
    model = unwrap(build_model_chunks(cfg, par)[0])
    load_checkpoint(model, folder)
    model.eval()
    logits = megatron_logits(model, batch, par.device)
    diff = torch.zeros((), dtype=torch.float64)
    if reference is not None:
        vocab = reference.shape[-1]
        diff = (logits[..., :vocab].double() - reference.double()).abs().max()
    diff = diff.to(par.device)
    torch.distributed.all_reduce(diff, op=torch.distributed.ReduceOp.MAX)
    return float(diff)
