"""Torchrun worker: a few real megatron training steps of a tiny preset on CPU ranks.

Every rank builds the same deterministic global batch and takes its data-parallel slice, so any
TP x PP x DP layout trains on the same data; losses are per-token (sum / tokens in the global
batch), so they are comparable across layouts. Optionally loads / saves a megatron
dist-checkpoint and freezes components. Rank 0 writes the JSON result.
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from megatron.core import dist_checkpointing, parallel_state
from megatron.core.distributed import DistributedDataParallelConfig, finalize_model_grads
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_fleming.model.config import ParallelConfig
from megatron_fleming.model.freeze import freeze
from megatron_fleming.model.parallel import (
    build_model_chunks,
    initialize_parallel,
    shutdown_parallel,
    unwrap,
    wrap_with_ddp,
)
from megatron_fleming.model.presets import load_preset
from megatron_fleming.model.vlm import IGNORE_INDEX

GLOBAL_BATCH = 4


def make_sample(cfg, step: int, index: int) -> dict[str, torch.Tensor]:
    """One sample: text, 1-2 image tiles as <IMG_CONTEXT> runs, more text; labels after the image."""
    gen = torch.Generator().manual_seed(1000 * step + index)
    tiles = 1 + (index % 2)
    image_tokens = tiles * cfg.tokens_per_tile
    length = 20 + 4 * (index % 2)
    vocab = cfg.language.vocab_size
    ids = torch.randint(cfg.image_context_token_id + 1, vocab, (1, length), generator=gen)
    ids[0, 2:2 + image_tokens] = cfg.image_context_token_id
    labels = torch.roll(ids, -1, dims=1)
    labels[0, :2 + image_tokens] = IGNORE_INDEX
    labels[0, -1] = IGNORE_INDEX
    size = cfg.vision.image_size
    pixels = torch.randn(tiles, cfg.vision.num_channels, size, size, generator=gen)
    return {"input_ids": ids, "labels": labels, "pixel_values": pixels}


def forward_step(data_iterator, model):
    batch = next(data_iterator)
    output = model(batch["input_ids"], batch["pixel_values"], labels=batch["labels"])

    def loss_func(output_tensor):
        tokens = (batch["labels"] != IGNORE_INDEX).sum().to(torch.int)
        loss = output_tensor.float().sum()
        return loss, tokens, {"loss": torch.stack([loss.detach(), tokens.float()])}

    return output, loss_func


def run_step(chunks, cfg, step: int, forward_only: bool) -> float | None:
    dp_rank = parallel_state.get_data_parallel_rank()
    dp_size = parallel_state.get_data_parallel_world_size()
    per_rank = GLOBAL_BATCH // dp_size
    samples = [make_sample(cfg, step, i) for i in range(dp_rank * per_rank, (dp_rank + 1) * per_rank)]
    reduced = get_forward_backward_func()(
        forward_step_func=forward_step, data_iterator=iter(samples), model=chunks,
        num_microbatches=per_rank, seq_length=24, micro_batch_size=1, forward_only=forward_only)
    total = torch.zeros(2, dtype=torch.float64)
    if parallel_state.is_pipeline_last_stage() and parallel_state.get_tensor_model_parallel_rank() == 0:
        total += sum(item["loss"].double() for item in reduced)
    torch.distributed.all_reduce(total)  # one contribution per DP replica
    return (total[0] / total[1]).item()


def padded_heads_zero(model) -> bool | None:
    """Whether InternViT's padding heads are still all-zero (None: no vision tower here)."""
    vision = unwrap(model).vision_model
    if vision is None or vision.config.num_attention_heads == vision.num_real_heads:
        return None
    local = vision.config.num_attention_heads // vision.config.tensor_model_parallel_size
    first = parallel_state.get_tensor_model_parallel_rank() * local
    dim = vision.config.kv_channels
    padded = [h for h in range(local) if first + h >= vision.num_real_heads]
    for layer in vision.decoder.layers:
        qkv = layer.self_attention.linear_qkv.weight.view(local, 3 * dim, -1)
        proj = layer.self_attention.linear_proj.weight.view(-1, local, dim)
        if any(qkv[h].any() or proj[:, h].any() for h in padded):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--delta", type=float, default=0.5)
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--pp", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--sp", action="store_true", help="sequence parallelism (needs --tp > 1)")
    parser.add_argument("--first-stage-layers", type=int, default=None,
                        help="language layers on pipeline stage 0 (uneven split)")
    parser.add_argument("--distributed-optimizer", action="store_true")
    parser.add_argument("--freeze", nargs="*", default=[])
    parser.add_argument("--load")
    parser.add_argument("--save")
    args = parser.parse_args()

    par = ParallelConfig(tensor_parallel=args.tp, pipeline_parallel=args.pp,
                         sequence_parallel=args.sp, first_stage_layers=args.first_stage_layers)
    cfg = load_preset(args.preset, v2pe_delta=args.delta)
    initialize_parallel(par, seed=1234)
    chunks = build_model_chunks(cfg, par)
    if args.load:
        state = dist_checkpointing.load({"model": chunks[0].sharded_state_dict()}, args.load)
        chunks[0].load_state_dict(state["model"])
    if args.save:
        if torch.distributed.get_rank() == 0:
            os.makedirs(args.save, exist_ok=True)
        torch.distributed.barrier()
        dist_checkpointing.save({"model": chunks[0].sharded_state_dict()}, args.save)
    freeze(chunks, args.freeze)
    frozen = {name: p.detach().clone() for name, p in unwrap(chunks[0]).named_parameters()
              if not p.requires_grad}
    trainable = {name: p.detach().clone() for name, p in unwrap(chunks[0]).named_parameters()
                 if p.requires_grad}

    ddp_config = DistributedDataParallelConfig(
        use_distributed_optimizer=args.distributed_optimizer, overlap_grad_reduce=False,
        grad_reduce_in_fp32=True)
    model = wrap_with_ddp(chunks, ddp_config)
    config = unwrap(model[0]).config
    config.finalize_model_grads_func = finalize_model_grads
    optimizer = get_megatron_optimizer(
        OptimizerConfig(optimizer="adam", lr=3e-3, weight_decay=0.05, adam_beta1=0.9,
                        adam_beta2=0.999, adam_eps=1e-6, clip_grad=1.0,
                        use_distributed_optimizer=args.distributed_optimizer),
        model)

    for chunk in model:
        chunk.eval()
    eval_loss = run_step(model, cfg, 0, forward_only=True)
    losses, grad_norms = [], []
    for step in range(args.steps):
        for chunk in model:
            chunk.train()
            chunk.zero_grad_buffer()
        optimizer.zero_grad()
        losses.append(run_step(model, cfg, 0, forward_only=False))  # same batch: loss must fall
        ok, grad_norm, _ = optimizer.step()
        assert ok, "optimizer step was skipped"
        grad_norms.append(float(grad_norm))

    params = dict(unwrap(model[0]).named_parameters())
    result = {
        "eval_loss": eval_loss, "losses": losses, "grad_norms": grad_norms,
        "frozen": len(frozen),
        "frozen_unchanged": all(torch.equal(params[n], v) for n, v in frozen.items()),
        "trainable_changed": all(not torch.equal(params[n], v) for n, v in trainable.items()),
        "padded_heads_zero": padded_heads_zero(model[0]),
        "language_layers": len(unwrap(model[0]).language_model.decoder.layers),
        "parameters": sum(p.numel() for p in unwrap(model[0]).parameters()),
    }
    all_results = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(all_results, result)
    if torch.distributed.get_rank() == 0:
        merged = {**result, "frozen": sum(r["frozen"] for r in all_results),
                  "frozen_unchanged": all(r["frozen_unchanged"] for r in all_results),
                  "trainable_changed": all(r["trainable_changed"] for r in all_results),
                  "padded_heads_zero": [r["padded_heads_zero"] for r in all_results],
                  "language_layers": [r["language_layers"] for r in all_results],
                  "parameters": [r["parameters"] for r in all_results]}
        print(json.dumps(merged))
        with open(args.out, "w") as handle:
            json.dump(merged, handle)
    shutdown_parallel()


if __name__ == "__main__":
    main()
