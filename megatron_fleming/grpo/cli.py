"""``fleming grpo``: stage 4 (GRPO) from a YAML config.

    fleming grpo --config megatron_fleming/configs/8b_stage4.yaml [--data DIR] [key=value ...]

Launched like ``fleming train``: on every rank (torchrun, or srun with the torch.distributed
environment, see scripts/slurm/), or as one process without a launcher. It resumes from
``checkpoint.dir`` when that holds a checkpoint and exits 0 both when the run finished and when
a SIGTERM stopped it after a checkpoint (``--stop-marker FILE`` tells the launcher which).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_grpo(args: argparse.Namespace) -> int:
    from megatron_fleming.grpo.config import load_grpo_config
    from megatron_fleming.grpo.run import run
    from megatron_fleming.train.cli import _quiet_other_ranks, _single_process_defaults

    _single_process_defaults()
    _quiet_other_ranks()
    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data.path={Path(args.data).resolve()}")
    run(load_grpo_config(args.config, overrides), stop_marker=args.stop_marker)
    return 0


def add_grpo_parser(commands: argparse._SubParsersAction) -> None:
    grpo = commands.add_parser(
        "grpo", help="stage 4: GRPO from a YAML config (see megatron_fleming/configs/*stage4*)",
        description=__doc__.splitlines()[0])
    grpo.add_argument("--config", type=Path, required=True, help="GRPO config (YAML)")
    grpo.add_argument("--data", type=Path, default=None,
                      help="the GRPO set: an energon dataset from datakit.llm.grpo_prep (sets data.path)")
    grpo.add_argument("--stop-marker", type=Path, default=None,
                      help="file written when a signal stopped the run after its checkpoint")
    grpo.add_argument("overrides", nargs="*", metavar="section.key=value",
                      help="config overrides, values parsed as YAML (e.g. train.prompts=64)")
    grpo.set_defaults(func=_cmd_grpo)
