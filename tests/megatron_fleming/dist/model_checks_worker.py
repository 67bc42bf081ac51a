"""Torchrun worker (1 rank): what the V2PE tests need from a real model on the CPU shim.

Writes tensors for the test to judge (the test computes its own float64 reference):
- `phases`: the rotary angles the language model's attention actually received in a forward
  pass with delta < 1 (captured from the rotary module), with the input_ids they came from;
- `logits_v2pe_delta1` vs `logits_integer_rope`: the same weights run once through the V2PE path
  with delta = 1 and once through megatron's standard integer-position RoPE;
- `logits_packed` vs `logits_separate`: two sequences packed in one row (cu_seqlens) vs run alone;
- `packed_losses[pad]` vs `separate_losses`: per-token losses of the packed row followed by `pad`
  padding tokens (0-15, what padding to a multiple of 16 leaves), vs each sequence alone; with
  what megatron's packed RoPE (`rope_utils._apply_rotary_pos_emb_thd`, the unfused path) and
  the core attention received on each call.
"""

from __future__ import annotations

import argparse
import json

import torch
from megatron.core.models.common.embeddings import rope_utils
from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

from megatron_fleming.model.config import ParallelConfig
from megatron_fleming.model.parallel import build_model_chunks, initialize_parallel, shutdown_parallel
from megatron_fleming.model.presets import load_preset
from megatron_fleming.model.vlm import IGNORE_INDEX


def sample(cfg, gen, images: int, text: int = 5):
    """text, then `images` x (<img>, one tile of <IMG_CONTEXT>, </img>), then text."""
    ctx = cfg.image_context_token_id
    low = ctx + 1
    parts = [torch.randint(low, cfg.language.vocab_size, (text,), generator=gen)]
    for _ in range(images):
        parts += [torch.tensor([low]), torch.full((cfg.tokens_per_tile,), ctx), torch.tensor([low])]
        parts.append(torch.randint(low, cfg.language.vocab_size, (3,), generator=gen))
    size = cfg.vision.image_size
    pixels = torch.randn(images, cfg.vision.num_channels, size, size, generator=gen)
    return torch.cat(parts)[None], pixels


def next_token_labels(ids: torch.Tensor) -> torch.Tensor:
    labels = torch.roll(ids, -1, dims=1)
    labels[0, -1] = IGNORE_INDEX
    return labels


def packed_pad_lengths(model, first, second, results: dict) -> dict:
    """Packed rows padded by 0-15 tokens; record what RoPE and attention were handed."""
    (ids1, px1), (ids2, px2) = first, second
    with torch.no_grad():
        results["separate_losses"] = torch.cat(
            [model(ids1, px1, labels=next_token_labels(ids1)),
             model(ids2, px2, labels=next_token_labels(ids2))], dim=1)
    rope_calls, attention_calls = [], []
    thd = rope_utils._apply_rotary_pos_emb_thd

    def recording_thd(t, cu_seqlens, freqs, *a, **kw):
        rope_calls.append({"tokens": t.shape[0], "bounds": cu_seqlens.tolist(),
                           "freqs": freqs.shape[0]})
        return thd(t, cu_seqlens, freqs, *a, **kw)

    def record_attention(_module, _args, kwargs):
        params = kwargs["packed_seq_params"]
        attention_calls.append({"format": params.qkv_format, "q": params.cu_seqlens_q.tolist(),
                                "kv": params.cu_seqlens_kv.tolist(),
                                "max_q": params.max_seqlen_q})

    hooks = [layer.self_attention.core_attention.register_forward_pre_hook(
        record_attention, with_kwargs=True) for layer in model.language_model.decoder.layers]
    rope_utils._apply_rotary_pos_emb_thd = recording_thd
    used = ids1.shape[1] + ids2.shape[1]
    runs = []
    try:
        for pad in range(16):
            ids = torch.cat([ids1, ids2, torch.zeros(1, pad, dtype=torch.long)], dim=1)
            labels = torch.cat([next_token_labels(ids1), next_token_labels(ids2),
                                torch.full((1, pad), IGNORE_INDEX)], dim=1)
            cu = torch.tensor([0, ids1.shape[1], used], dtype=torch.int32)
            rope_calls.clear()
            attention_calls.clear()
            with torch.no_grad():
                results[f"packed_losses_{pad}"] = model(ids, torch.cat([px1, px2]), labels=labels,
                                                       cu_seqlens=cu)
            runs.append({"pad": pad, "rope": list(rope_calls), "attention": list(attention_calls)})
    finally:
        rope_utils._apply_rotary_pos_emb_thd = thd
        for hook in hooks:
            hook.remove()
    return {"packed_runs": runs, "packed_used_tokens": used}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--delta", type=float, default=0.25)
    args = parser.parse_args()
    par = ParallelConfig()
    initialize_parallel(par, seed=7)
    gen = torch.Generator().manual_seed(0)
    results: dict[str, torch.Tensor] = {}

    # 1. Rotary angles seen by attention, delta < 1.
    cfg = load_preset("tiny", v2pe_delta=args.delta)
    model = build_model_chunks(cfg, par)[0].eval()
    ids, pixels = sample(cfg, gen, images=3)
    captured = []
    hook = model.language_model.rotary_pos_emb.register_forward_hook(
        lambda _m, _i, out: captured.append(out.detach().clone()))
    with torch.no_grad():
        model(ids, pixels)
    hook.remove()
    results.update(phases=captured[0], phase_input_ids=ids)

    # 2. delta = 1 through V2PE/mRoPE vs megatron's standard integer RoPE, same weights.
    cfg1 = load_preset("tiny", v2pe_delta=1.0)
    v2pe_model = build_model_chunks(cfg1, par)[0].eval()
    rope_model = build_model_chunks(cfg1, par)[0].eval()
    rope_model.load_state_dict(v2pe_model.state_dict())
    lang = rope_model.language_model
    lang.position_embedding_type = "rope"
    lang.rotary_pos_emb = RotaryEmbedding(kv_channels=cfg1.language.head_dim, rotary_percent=1.0,
                                          rotary_base=cfg1.language.rope_theta,
                                          use_cpu_initialization=True)
    with torch.no_grad():
        results["logits_v2pe_delta1"] = v2pe_model(ids, pixels)
        results["logits_integer_rope"] = rope_model(ids, pixels)

    # 3. Packing: positions restart and attention stays within each sequence.
    first, first_px = sample(cfg, gen, images=1)
    second, second_px = sample(cfg, gen, images=2, text=4)
    packed = torch.cat([first, second], dim=1)
    cu_seqlens = torch.tensor([0, first.shape[1], packed.shape[1]], dtype=torch.int32)
    with torch.no_grad():
        results["logits_packed"] = model(packed, torch.cat([first_px, second_px]),
                                         cu_seqlens=cu_seqlens)
        results["logits_separate"] = torch.cat(
            [model(first, first_px), model(second, second_px)], dim=1)

    # 4. Every padding length a multiple of 16 can leave, through megatron's packed RoPE.
    meta_packed = packed_pad_lengths(model, (first, first_px), (second, second_px), results)

    tensors = args.out + ".pt"
    torch.save(results, tensors)
    meta = {"tensors": tensors, "delta": args.delta, "head_dim": cfg.language.head_dim,
            "rope_theta": cfg.language.rope_theta,
            "image_context_token_id": cfg.image_context_token_id, **meta_packed}
    with open(args.out, "w") as handle:
        json.dump(meta, handle)
    print(json.dumps(meta))
    shutdown_parallel()


if __name__ == "__main__":
    main()
