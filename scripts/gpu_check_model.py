"""bf16 training-step time and MFU of a model preset on one GPU (default: the ~1B `small`).

Runs real megatron-core training steps (DDP + megatron optimizer, per-token loss, 1 micro-batch
of one packed-length row per step by default) on synthetic data shaped like Fleming-VL's: each
row holds `--tiles` 448-px tiles (256 tokens each) and text up to `--seq` tokens. Prints the
median step time, tokens/s, achieved model TFLOP/s and MFU against the GPU's dense bf16 peak
(989 TFLOP/s for H100/H200 SXM unless `--peak-tflops`), and writes them as JSON to
`$OUT/gpu_check_model.json` when $OUT is set.

Model FLOPs count the matrix products only (linear layers, attention scores and values, the LM
head, the ViT patch embedding), x3 for forward + backward, causal attention at half cost; the
ViT and the projector are counted per tile. `--device cpu` runs the same path on the CPU shim
(fp32) as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
from megatron_fleming.model.v2pe import v2pe_position_ids


def model_flops_per_row(cfg: VLMConfig, seq: int, tiles: int) -> float:
    """Forward + backward FLOPs of one row: `seq` tokens, `tiles` image tiles."""
    lang, vision = cfg.language, cfg.vision
    d, h = lang.head_dim, lang.hidden_size
    per_token = (2 * h * (lang.num_attention_heads + 2 * lang.num_query_groups) * d  # qkv
                 + 2 * lang.num_attention_heads * d * h  # proj
                 + 2 * h * 2 * lang.ffn_hidden_size + 2 * lang.ffn_hidden_size * h  # SwiGLU
                 + 2 * 2 * (seq / 2) * lang.num_attention_heads * d)  # causal scores + values
    llm = seq * (lang.num_layers * per_token + 2 * h * lang.padded_vocab_size)
    n, dv = vision.num_patches + 1, vision.hidden_size
    hv = vision.heads * vision.head_dim
    vit_token = (2 * dv * 3 * hv + 2 * hv * dv + 2 * 2 * dv * vision.ffn_hidden_size
                 + 2 * 2 * n * hv)  # non-causal attention
    patch = 2 * vision.num_channels * vision.patch_size**2 * dv
    k2 = cfg.projector.unshuffle_factor**2
    projector = cfg.tokens_per_tile * (2 * k2 * dv * h + 2 * h * h)
    vit = tiles * (n * vision.num_layers * vit_token + vision.num_patches * patch + projector)
    return 3.0 * (llm + vit)


def make_batch(cfg: VLMConfig, seq: int, tiles: int, device: str) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(cfg.image_context_token_id + 1, cfg.language.vocab_size, (1, seq),
                        generator=gen)
    image = tiles * cfg.tokens_per_tile
    ids[0, 8:8 + image] = cfg.image_context_token_id
    labels = torch.roll(ids, -1, dims=1)
    labels[0, :8 + image] = -100
    labels[0, -1] = -100
    positions = v2pe_position_ids(ids, cfg.image_context_token_id, cfg.v2pe_delta)  # data side
    size = cfg.vision.image_size
    pixels = torch.randn(tiles, 3, size, size, generator=gen)
    batch = {"input_ids": ids, "labels": labels, "position_ids": positions, "pixel_values": pixels}
    return {k: v.to(device) for k, v in batch.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seq", type=int, default=4096)
    parser.add_argument("--tiles", type=int, default=6)
    parser.add_argument("--microbatches", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--recompute", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()

    cuda = args.device == "cuda"
    par = ParallelConfig(device=args.device, dtype="bf16" if cuda else "fp32",
                         recompute_activations=args.recompute)
    cfg = load_preset(args.preset)
    initialize_parallel(par, seed=1234)
    model = wrap_with_ddp(build_model_chunks(cfg, par), DistributedDataParallelConfig(
        grad_reduce_in_fp32=True, overlap_grad_reduce=False, use_distributed_optimizer=True))
    unwrap(model[0]).config.finalize_model_grads_func = finalize_model_grads
    optimizer = get_megatron_optimizer(OptimizerConfig(
        optimizer="adam", lr=1e-5, weight_decay=0.05, adam_beta1=0.9, adam_beta2=0.999,
        adam_eps=1e-8, clip_grad=1.0, bf16=cuda, params_dtype=torch.bfloat16 if cuda else
        torch.float32, use_distributed_optimizer=True), model)
    batch = make_batch(cfg, args.seq, args.tiles, "cuda" if cuda else "cpu")

    def forward_step(_iterator, chunk):
        out = chunk(batch["input_ids"], batch["pixel_values"], labels=batch["labels"],
                    position_ids=batch["position_ids"])

        def loss_func(output):
            tokens = (batch["labels"] != -100).sum().to(torch.int)
            loss = output.float().sum()
            return loss, tokens, {"loss": torch.stack([loss.detach(), tokens.float()])}

        return out, loss_func

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
            num_microbatches=args.microbatches, seq_length=args.seq, micro_batch_size=1)
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
        total = sum(item["loss"] for item in reduced)
        losses.append((total[0] / total[1]).item())

    step_s = statistics.median(times)
    flops = args.microbatches * model_flops_per_row(cfg, args.seq, args.tiles)
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = args.peak_tflops or (989.0 if ("H100" in name or "H200" in name) else None)
    params = sum(p.numel() for p in unwrap(model[0]).parameters())
    result = {
        "device": name, "preset": args.preset, "parameters": params, "seq": args.seq,
        "tiles_per_row": args.tiles, "microbatches": args.microbatches,
        "step_time_s": step_s, "tokens_per_s": args.microbatches * args.seq / step_s,
        "model_tflops_per_s": flops / step_s / 1e12,
        "mfu": (flops / step_s / 1e12 / peak) if peak else None,
        "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "losses": losses, "recompute": args.recompute, "transformer_impl": par.transformer_impl,
    }
    print(json.dumps(result, indent=1))
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_check_model.json"), "w") as handle:
            json.dump(result, handle, indent=1)
    shutdown_parallel()


if __name__ == "__main__":
    main()
