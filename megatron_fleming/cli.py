"""The ``fleming`` command. Each subcommand parses its arguments here and calls one library function.

    fleming convert hf-to-mcore --hf DIR --out DIR --tp N --pp M [--verify]
    fleming convert mcore-to-hf --mcore DIR --out DIR [--layout internvl|transformers]
    fleming train --config CONFIG.yaml [--data DIR] [section.key=value ...]
    fleming plan --config CONFIG.yaml [--gpus N] [section.key=value ...]
    fleming grpo --config CONFIG.yaml [--data DIR] [section.key=value ...]
    fleming eval run --benchmark NAME[,NAME] --data DIR --hf CKPT --out DIR
    fleming eval score --benchmark NAME --data DIR --responses FILE.jsonl --out DIR
    fleming generate (--hf DIR | --mcore DIR) --input REQUESTS.jsonl --output ANSWERS.jsonl [...]
    fleming chat (--hf DIR | --mcore DIR) [--image PATH ...]
    fleming pipeline --config PIPELINE.yaml [--out DIR] [--slurm] [--dry-run]

Subcommands register themselves through `add_*_parser` functions, so `train` and `eval` can join
without touching the others.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from megatron_fleming.eval.cli import add_eval_parser
from megatron_fleming.generate.cli import add_chat_parser, add_generate_parser
from megatron_fleming.grpo.cli import add_grpo_parser
from megatron_fleming.model.config import MAKE_VOCAB_SIZE_DIVISIBLE_BY
from megatron_fleming.pipeline.cli import add_pipeline_parser
from megatron_fleming.train.cli import add_plan_parser, add_train_parser


def _cmd_hf_to_mcore(args: argparse.Namespace) -> int:
    from megatron_fleming.convert import HFToMcore, hf_to_mcore
    from megatron_fleming.convert.launch import is_rank_zero, resolve_device

    diff = hf_to_mcore(HFToMcore(
        hf=args.hf, out=args.out, tensor_parallel=args.tp, pipeline_parallel=args.pp,
        device=resolve_device(args.device), dtype=args.dtype,
        vision_padded_heads=args.vision_padded_heads,
        make_vocab_size_divisible_by=args.make_vocab_size_divisible_by, verify=args.verify))
    if not is_rank_zero():
        return 0
    print(f"wrote Megatron checkpoint {args.out} (TP={args.tp}, PP={args.pp}, vocabulary padded "
          f"to a multiple of {args.make_vocab_size_divisible_by * args.tp})")
    if diff is None:
        return 0
    ok = diff <= args.tolerance
    print(f"verify: {'ok' if ok else 'FAILED'} (tolerance {args.tolerance:g})")
    print(f"max_abs_logits_diff={diff:.3e}")
    return 0 if ok else 1


def _cmd_mcore_to_hf(args: argparse.Namespace) -> int:
    from megatron_fleming.convert import McoreToHF, mcore_to_hf
    from megatron_fleming.convert.launch import resolve_device

    layout = mcore_to_hf(McoreToHF(mcore=args.mcore, out=args.out, layout=args.layout,
                                   device=resolve_device(args.device)))
    print(f"wrote Hugging Face checkpoint {args.out} ({layout} layout)")
    return 0


def add_convert_parser(commands: argparse._SubParsersAction) -> None:
    convert = commands.add_parser("convert", help="convert checkpoints between Hugging Face and Megatron")
    directions = convert.add_subparsers(dest="direction", required=True)

    to_mcore = directions.add_parser(
        "hf-to-mcore", help="Hugging Face InternVL (either layout) -> Megatron distributed checkpoint",
        description="Runs on tp*pp ranks: spawned here, or the ranks of a torchrun launch.")
    to_mcore.add_argument("--hf", type=Path, required=True, help="Hugging Face checkpoint folder")
    to_mcore.add_argument("--out", type=Path, required=True, help="Megatron checkpoint folder to write")
    to_mcore.add_argument("--tp", type=int, default=1, help="tensor-parallel size")
    to_mcore.add_argument("--pp", type=int, default=1, help="pipeline-parallel size")
    to_mcore.add_argument("--dtype", choices=("auto", "fp32", "bf16"), default="auto",
                          help="weights dtype in the checkpoint (auto: as in the Hugging Face files)")
    to_mcore.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    to_mcore.add_argument("--vision-padded-heads", type=int, default=None,
                          help="ViT heads incl. zero padding (default: next multiple of --tp)")
    to_mcore.add_argument("--make-vocab-size-divisible-by", type=int,
                          default=MAKE_VOCAB_SIZE_DIVISIBLE_BY,
                          help="pad the vocabulary to a multiple of this x --tp, as Megatron-LM "
                               "does (padded rows are zero, masked, stripped on export)")
    to_mcore.add_argument("--verify", action="store_true",
                          help="run both models in fp32 and print max_abs_logits_diff last")
    to_mcore.add_argument("--tolerance", type=float, default=1e-4,
                          help="--verify fails (exit 1) above this max absolute logits difference")
    to_mcore.set_defaults(func=_cmd_hf_to_mcore)

    to_hf = directions.add_parser("mcore-to-hf", help="Megatron distributed checkpoint -> Hugging Face")
    to_hf.add_argument("--mcore", type=Path, required=True, help="Megatron checkpoint folder")
    to_hf.add_argument("--out", type=Path, required=True, help="Hugging Face folder to write")
    to_hf.add_argument("--layout", choices=("internvl", "transformers"), default=None,
                       help="default: the layout the checkpoint was converted from")
    to_hf.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    to_hf.set_defaults(func=_cmd_mcore_to_hf)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleming", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_convert_parser(commands)
    add_train_parser(commands)
    add_plan_parser(commands)
    add_grpo_parser(commands)
    add_eval_parser(commands)
    add_generate_parser(commands)
    add_chat_parser(commands)
    add_pipeline_parser(commands)
    return parser


# Third-party messages a user of `fleming` cannot act on: megatron-core's Apex / Transformer
# Engine fallbacks (the GPU extra installs TE), deprecations inside megatron-core and torch, and
# the CPU run's "no accelerator" notes. Matched by message; our own warnings are left alone.
QUIET_WARNINGS = (
    (r".*(Apex|Transformer Engine)( and Apex)? (is|are) not installed", UserWarning),
    (r"full scope is deprecated", UserWarning),
    (r"'pin_memory' argument is set as true but no accelerator is found", UserWarning),
    (r"The \.grad attribute of a Tensor that is not a leaf Tensor is being accessed", UserWarning),
    (r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor)` is deprecated", FutureWarning),
)
# megatron-core loggers whose INFO/WARNING lines narrate its own setup
QUIET_LOGGERS = {"megatron.core": logging.WARNING, "megatron.core.rerun_state_machine": logging.ERROR}


def quiet_third_party() -> None:
    for message, category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def main(argv: list[str] | None = None) -> int:
    quiet_third_party()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
