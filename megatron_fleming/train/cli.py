"""``fleming train``: train one stage from a YAML config; ``fleming plan``: what it will cost.

    fleming train --config megatron_fleming/configs/8b_stage2.yaml [--data DIR] [key=value ...]

Run it on every rank (torchrun, or srun with RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT set, see scripts/slurm/); without a launcher it runs as a single process. It resumes
from ``checkpoint.dir`` when that holds a checkpoint, and exits 0 both when training finished
and when a SIGTERM stopped it after a checkpoint (``--stop-marker FILE`` tells the launcher
which of the two happened).

    fleming plan --config megatron_fleming/configs/38b_stage1.yaml --gpus 32 [key=value ...]

prints the parameters, the memory per GPU (weights, gradients, optimizer states, activations at
the configured micro-batch and sequence length) and the compute of each pipeline stage, without
a GPU or the data.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
from pathlib import Path


def _single_process_defaults() -> None:
    """No launcher (no RANK in the environment): a one-process group on a free local port."""
    if "RANK" in os.environ:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))


def _quiet_other_ranks() -> None:
    """Rank 0 logs; other ranks only warn. megatron's own INFO chatter stays off."""
    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("megatron").setLevel(logging.WARNING)


def _cmd_train(args: argparse.Namespace) -> int:
    from megatron_fleming.train.config import load_config
    from megatron_fleming.train.trainer import run

    _single_process_defaults()
    _quiet_other_ranks()
    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data.path={Path(args.data).resolve()}")
    cfg = load_config(args.config, overrides)
    run(cfg, stop_marker=args.stop_marker)
    return 0


def add_train_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train", help="train stage 1, 2 or 3 from a YAML config (see megatron_fleming/configs/)",
        description=__doc__.splitlines()[0])
    train.add_argument("--config", type=Path, required=True, help="training config (YAML)")
    train.add_argument("--data", type=Path, default=None,
                       help="energon dataset folder or metadataset YAML (sets data.path)")
    train.add_argument("--stop-marker", type=Path, default=None,
                       help="file written when a signal stopped training after its checkpoint")
    train.add_argument("overrides", nargs="*", metavar="section.key=value",
                       help="config overrides, values parsed as YAML "
                            "(e.g. train.conversations=1000)")
    train.set_defaults(func=_cmd_train)


def _cmd_plan(args: argparse.Namespace) -> int:
    import json

    from megatron_fleming.train.config import load_config
    from megatron_fleming.train.plan import plan

    result = plan(load_config(args.config, list(args.overrides)), gpus=args.gpus,
                  gpu_memory_gib=args.gpu_memory_gib)
    if args.json:
        print(json.dumps(dataclasses.asdict(result), indent=1))
    else:
        print(result.render())
    return 0 if result.fits() else 2


def add_plan_parser(commands: argparse._SubParsersAction) -> None:
    planner = commands.add_parser(
        "plan", help="parameters, memory per GPU and compute per pipeline stage of a config",
        description="Estimates for a config before launch (no GPU, no data needed); exits 2 when "
                    "a stage does not fit in --gpu-memory-gib.")
    planner.add_argument("--config", type=Path, required=True, help="training config (YAML)")
    planner.add_argument("--gpus", type=int, default=None,
                         help="GPUs of the run (default TP x PP: data parallel 1)")
    planner.add_argument("--gpu-memory-gib", type=float, default=80.0,
                         help="memory of one GPU (H100 80, H200 141)")
    planner.add_argument("--json", action="store_true", help="print the plan as JSON")
    planner.add_argument("overrides", nargs="*", metavar="section.key=value",
                         help="config overrides, values parsed as YAML")
    planner.set_defaults(func=_cmd_plan)
