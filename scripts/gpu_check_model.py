"""GPU check of the model on one GPU: Transformer Engine in use, packed == masked, speed and MFU.

    bash scripts/gpu_check_model.sh [--preset small] [--seq 4096] [--tiles 6] [--recompute]

Asserts, and exits non-zero when one fails:

1. Transformer Engine is in use (``transformer_impl: transformer_engine``): every decoder layer's
   core attention is TE's ``TEDotProductAttention`` and its linears TE's, in the ViT too, not
   megatron's local fallbacks.
2. The packed path equals the masked one: conversations with image tiles packed in one row and
   padded to a multiple of 16 (THD `PackedSeqParams`, the padding a segment of its own, TE's
   fused / flash attention over ``cu_seqlens``) give the per-token losses of the same
   conversations one per row (causal attention, right padding, labels masked): mean |difference|
   <= PACKED_MEAN_TOL and max <= PACKED_MAX_TOL nats (bf16 on GPU; fp32 on CPU, tighter).
3. Training steps on packed rows: median step time, tokens/s, model TFLOP/s and MFU (model FLOPs
   counted as `fleming plan` counts them, each conversation attending within itself; peak 989
   TFLOP/s dense bf16 for H100/H200 SXM unless ``--peak-tflops``) are printed and written to
   ``$OUT/gpu_check_model.json``; the losses must be finite.

``--device cpu`` runs 2 and 3 on the CPU shim with local layers in fp32 (1 needs a GPU): that is
what the CPU test of this script runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
from megatron.core.distributed import DistributedDataParallelConfig, finalize_model_grads
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_fleming.model.config import ParallelConfig, VLMConfig
from megatron_fleming.model.parallel import (
    build_model_chunks,
    initialize_parallel,
    shutdown_parallel,
    unwrap,
    wrap_with_ddp,
)
from megatron_fleming.model.presets import load_preset
from megatron_fleming.model.vlm import IGNORE_INDEX
from megatron_fleming.train.plan import conversation_flops

#: Packed vs masked per-token losses (nats). bf16 GPU kernels differ in accumulation order
#: between THD and padded layouts; fp32 on CPU runs the same math in other matmul shapes.
PACKED_MEAN_TOL = {"bf16": 1e-2, "fp32": 1e-5}
PACKED_MAX_TOL = {"bf16": 1e-1, "fp32": 1e-4}
PAD_MULTIPLE = 16


class CheckFailed(AssertionError):
    pass


def check(ok: bool, message: str) -> None:
    print(("PASS " if ok else "FAIL ") + message, flush=True)
    if not ok:
        raise CheckFailed(message)


def conversation(cfg: VLMConfig, gen: torch.Generator, length: int, tiles: int):
    """Text, `tiles` tiles of <IMG_CONTEXT>, text: (ids [length], labels, uint8 tiles)."""
    image = tiles * cfg.tokens_per_tile
    if length < image + 4:
        raise ValueError(f"a conversation of {length} tokens cannot hold {tiles} tiles")
    ids = torch.randint(cfg.image_context_token_id + 1, cfg.language.vocab_size, (length,),
                        generator=gen)
    ids[2:2 + image] = cfg.image_context_token_id
    labels = torch.roll(ids, -1)
    labels[:2 + image] = IGNORE_INDEX
    labels[-1] = IGNORE_INDEX
    size = cfg.vision.image_size
    pixels = torch.randint(0, 256, (tiles, 3, size, size), generator=gen, dtype=torch.uint8)
    return ids, labels, pixels


def packed_row(convs, pad_id: int = 0):
    """One row of conversations back to back, padded to a multiple of PAD_MULTIPLE."""
    used = sum(c[0].numel() for c in convs)
    pad = -used % PAD_MULTIPLE
    ids = torch.cat([c[0] for c in convs] + [torch.full((pad,), pad_id)])[None]
    labels = torch.cat([c[1] for c in convs] + [torch.full((pad,), IGNORE_INDEX)])[None]
    bounds = [0]
    for c in convs:
        bounds.append(bounds[-1] + c[0].numel())
    cu = torch.tensor(bounds, dtype=torch.int32)
    return ids, labels, torch.cat([c[2] for c in convs]), cu


def padded_rows(convs, pad_id: int = 0):
    """One conversation per row, right-padded to the longest (rounded up to PAD_MULTIPLE)."""
    width = max(c[0].numel() for c in convs)
    width += -width % PAD_MULTIPLE
    ids = torch.full((len(convs), width), pad_id)
    labels = torch.full((len(convs), width), IGNORE_INDEX)
    for row, c in enumerate(convs):
        ids[row, :c[0].numel()], labels[row, :c[1].numel()] = c[0], c[1]
    return ids, labels, torch.cat([c[2] for c in convs])


def check_transformer_engine(model: torch.nn.Module) -> None:
    from megatron.core.extensions import transformer_engine as te

    vlm = unwrap(model)
    layers = list(vlm.language_model.decoder.layers) + list(vlm.vision_model.decoder.layers)
    attention = [type(layer.self_attention.core_attention) for layer in layers]
    linears = [type(m) for layer in layers for m in (layer.self_attention.linear_qkv,
                                                      layer.self_attention.linear_proj,
                                                      layer.mlp.linear_fc1, layer.mlp.linear_fc2)]
    te_linear = (te.TELinear, te.TELayerNormColumnParallelLinear, te.TEColumnParallelLinear,
                 te.TERowParallelLinear)
    check(all(issubclass(t, te.TEDotProductAttention) for t in attention),
          f"Transformer Engine attention in all {len(layers)} layers "
          f"({sorted({t.__name__ for t in attention})})")
    check(all(issubclass(t, te_linear) for t in linears),
          f"Transformer Engine linears in all {len(layers)} layers "
          f"({sorted({t.__name__ for t in linears})})")


@torch.no_grad()
def check_packed_equals_masked(model, cfg: VLMConfig, device: str, dtype: str, seq: int,
                               tiles: int) -> dict:
    gen = torch.Generator().manual_seed(1)
    # Four conversations of uneven length whose total leaves padding (a final segment).
    lengths = [seq // 4 - 3, seq // 3 + 1, seq // 6 + 5, seq // 5 - 7]
    shares = [max(1, tiles // 2), max(1, tiles - tiles // 2), 0, 1]  # tiles to the long ones
    convs = [conversation(cfg, gen, n, k) for n, k in zip(lengths, shares)]
    ids, labels, pixels, cu = packed_row(convs)
    packed = model(ids.to(device), pixels.to(device), labels=labels.to(device),
                   cu_seqlens=cu.to(device)).float().cpu()[0]
    rows, row_labels, row_pixels = padded_rows(convs)
    masked = model(rows.to(device), row_pixels.to(device),
                   labels=row_labels.to(device)).float().cpu()
    want = torch.cat([masked[r, :c[0].numel()] for r, c in enumerate(convs)])
    got = packed[:int(cu[-1])]
    scored = torch.cat([c[1] for c in convs]) != IGNORE_INDEX
    diff = (got - want).abs()[scored]
    result = {"packed_tokens": int(ids.shape[1]), "padding": int(ids.shape[1] - cu[-1]),
              "scored_tokens": int(scored.sum()), "mean_loss": float(want[scored].mean()),
              "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max())}
    check(result["padding"] > 0 and not packed[int(cu[-1]):].any(),
          f"the packed row has {result['padding']} padding tokens and they carry no loss")
    check(result["mean_abs_diff"] <= PACKED_MEAN_TOL[dtype] and
          result["max_abs_diff"] <= PACKED_MAX_TOL[dtype],
          f"packed == masked per-token loss over {result['scored_tokens']} tokens: mean |diff| "
          f"{result['mean_abs_diff']:.2e} <= {PACKED_MEAN_TOL[dtype]:g}, max "
          f"{result['max_abs_diff']:.2e} <= {PACKED_MAX_TOL[dtype]:g} ({dtype})")
    return result


def time_training(model, optimizer, cfg: VLMConfig, device: str, args) -> dict:
    gen = torch.Generator().manual_seed(0)
    n = 4  # conversations per packed row
    per_conv = args.seq // n
    convs = [conversation(cfg, gen, per_conv - (i * 7) % 32, args.tiles // n + (i < args.tiles % n))
             for i in range(n)]
    ids, labels, pixels, cu = (t.to(device) for t in packed_row(convs))
    lengths = [c[0].numel() for c in convs]

    def forward_step(_iterator, chunk):
        out = chunk(ids, pixels, labels=labels, cu_seqlens=cu)

        def loss_func(output):
            tokens = (labels != IGNORE_INDEX).sum().to(torch.int)
            loss = output.float().sum()
            return loss, tokens, {"loss": torch.stack([loss.detach(), tokens.float()])}

        return out, loss_func

    cuda = device == "cuda"
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for chunk in model:
            chunk.zero_grad_buffer()
        optimizer.zero_grad()
        reduced = get_forward_backward_func()(
            forward_step_func=forward_step, data_iterator=None, model=model,
            num_microbatches=args.microbatches, seq_length=ids.shape[1], micro_batch_size=1)
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
        total = sum(item["loss"] for item in reduced)
        losses.append((total[0] / total[1]).item())
    step_s = statistics.median(times)
    flops = args.microbatches * conversation_flops(cfg, lengths, int(pixels.shape[0]))
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = args.peak_tflops or (989.0 if ("H100" in name or "H200" in name) else None)
    tflops = flops / step_s / 1e12
    result = {"device": name, "step_time_s": step_s,
              "tokens_per_s": args.microbatches * int(cu[-1]) / step_s,
              "model_tflops_per_s": tflops, "mfu": tflops / peak if peak else None,
              "peak_tflops": peak, "losses": losses,
              "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}
    check(all(math.isfinite(x) for x in losses), f"{len(losses)} training steps, finite losses")
    print(f"step {step_s:.3f}s | tokens/s {result['tokens_per_s']:.0f} | model TFLOP/s "
          f"{tflops:.1f} | MFU {'n/a' if peak is None else f'{tflops / peak:.1%}'}", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seq", type=int, default=4096, help="tokens of one packed row")
    parser.add_argument("--tiles", type=int, default=6, help="image tiles of one packed row")
    parser.add_argument("--microbatches", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--recompute", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()

    cuda = args.device == "cuda"
    dtype = "bf16" if cuda else "fp32"
    par = ParallelConfig(device=args.device, dtype=dtype, recompute_activations=args.recompute,
                         transformer_impl="transformer_engine" if cuda else "local")
    cfg = load_preset(args.preset)
    initialize_parallel(par, seed=1234)
    report: dict = {"preset": args.preset, "seq": args.seq, "tiles_per_row": args.tiles,
                    "transformer_impl": par.transformer_impl, "dtype": dtype,
                    "tolerances": {"packed_mean": PACKED_MEAN_TOL[dtype],
                                   "packed_max": PACKED_MAX_TOL[dtype]}}
    failed = None
    try:
        model = wrap_with_ddp(build_model_chunks(cfg, par), DistributedDataParallelConfig(
            grad_reduce_in_fp32=True, overlap_grad_reduce=False, use_distributed_optimizer=True))
        unwrap(model[0]).config.finalize_model_grads_func = finalize_model_grads
        report["parameters"] = sum(p.numel() for p in unwrap(model[0]).parameters())
        if cuda:
            check_transformer_engine(model[0])
        model[0].eval()
        report["packed_vs_masked"] = check_packed_equals_masked(
            model[0], cfg, args.device, dtype, args.seq, args.tiles)
        model[0].train()
        optimizer = get_megatron_optimizer(OptimizerConfig(
            optimizer="adam", lr=1e-5, weight_decay=0.05, adam_beta1=0.9, adam_beta2=0.999,
            adam_eps=1e-8, clip_grad=1.0, bf16=cuda,
            params_dtype=torch.bfloat16 if cuda else torch.float32,
            use_distributed_optimizer=True), model)
        report["training"] = time_training(model, optimizer, cfg, args.device, args)
    except CheckFailed as e:
        failed = str(e)
    report["passed"] = failed is None
    print(json.dumps(report, indent=1))
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_check_model.json"), "w") as handle:
            json.dump(report, handle, indent=1)
    shutdown_parallel()
    return 0 if failed is None else 1


if __name__ == "__main__":
    sys.exit(main())
