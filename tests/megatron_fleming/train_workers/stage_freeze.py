"""Torchrun worker: a few stage-2 steps through `TrainModule` (built exactly as `run` builds it)
and, per rank, which parameters changed. Rank 0 writes every rank's report to --out.

Before training, the module is initialised the way a stage starts (`checkpoint.init_from`): the
weights of another, differently seeded model are saved as a megatron dist-checkpoint and loaded
into it; the report says whether every weight then equals that model's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    import torch
    from megatron.core import dist_checkpointing

    from megatron_fleming.model.parallel import (
        initialize_parallel,
        seed_model_parallel_rng,
        shutdown_parallel,
    )
    from megatron_fleming.train.checkpoint import Checkpointer
    from megatron_fleming.train.config import load_config
    from megatron_fleming.train.schedule import StageLength, global_consumed
    from megatron_fleming.train.train_module import TrainModule
    from megatron_fleming.train.trainer import build_components

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    vlm = cfg.vlm_config()
    initialize_parallel(cfg.parallel, seed=cfg.train.seed + 1)
    source = TrainModule(cfg, vlm, StageLength.of(cfg))  # the "previous stage": other weights
    init_dir = Path(cfg.checkpoint.dir) / "init"
    if torch.distributed.get_rank() == 0:
        init_dir.mkdir(parents=True)
    torch.distributed.barrier()
    dist_checkpointing.save(source.model_sharded_state_dict(), str(init_dir))
    seed_model_parallel_rng(cfg.train.seed)
    parts = build_components(cfg, vlm)
    params = {name: p for chunk in parts.module.chunks for name, p in chunk.named_parameters()}
    wanted = {name: p.detach().clone()
              for chunk in source.chunks for name, p in chunk.named_parameters()}
    differed = any(not torch.equal(p, wanted[n]) for n, p in params.items())
    Checkpointer(cfg.checkpoint).init_model(parts.module, init_dir)
    initialised = differed and all(torch.equal(p.detach(), wanted[n]) for n, p in params.items())
    before = {name: p.detach().clone() for name, p in params.items()}
    data = iter(parts.loader)
    micro = cfg.microbatches(1)
    losses = []
    for _ in range(args.steps):
        batches = [next(data) for _ in range(micro)]
        result = parts.module.train_step(batches, consumed=global_consumed(batches, parts.module.device))
        assert result.update_applied
        losses.append(result.loss_sum)
    report = {
        "rank": torch.distributed.get_rank(),
        "changed": sorted(n for n, p in params.items() if not torch.equal(p.detach(), before[n])),
        "unchanged": sorted(n for n, p in params.items() if torch.equal(p.detach(), before[n])),
        "requires_grad": sorted(n for n, p in params.items() if p.requires_grad),
        "optimizer_params": sum(p.numel() for g in parts.module.optimizer.param_groups
                                for p in g["params"]),
        "losses": losses,
        "initialised_from_checkpoint": initialised,
    }
    reports = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(reports, report)
    if torch.distributed.get_rank() == 0:
        with open(args.out, "w") as handle:
            json.dump(reports, handle)
    shutdown_parallel()


if __name__ == "__main__":
    main()
