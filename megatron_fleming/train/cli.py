"""``fleming train``: train one stage from a YAML config.

    fleming train --config megatron_fleming/configs/8b_stage2.yaml [--data DIR] [key=value ...]

Run it on every rank (torchrun, or srun with RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT set, see scripts/slurm/); without a launcher it runs as a single process. It resumes
from ``checkpoint.dir`` when that holds a checkpoint, and exits 0 both when training finished
and when a SIGTERM stopped it after a checkpoint (``--stop-marker FILE`` tells the launcher
which of the two happened).
"""

from __future__ import annotations

import argparse
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
                       help="config overrides, values parsed as YAML (e.g. train.conversations=1000)")
    train.set_defaults(func=_cmd_train)
