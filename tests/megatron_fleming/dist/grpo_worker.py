"""Torchrun worker: GRPO runs of the tiny VLM on the toy letter task, reported as JSON.

Mode ``tp1`` (one process), in order, each a real `fleming train` / `fleming grpo` run:
- ``warmup``: stage 3 on the noisy-label set (the model learns the answer format, and the images
  only as well as noisy labels allow);
- ``rows``: GRPO from it for ``--iters`` iterations, uninterrupted (metrics per iteration);
- ``resumed``: the same run stopped after 2 iterations (``train.exit_interval``) and resumed to 4;
- ``drift``: one iteration with the engine placing visual tokens at delta 1 while the trainer uses
  the model's fractional delta: the consistency check must stop the run.
Mode ``tp2`` (two processes): the GRPO run at tensor parallel 2, stopped after 4 iterations.
Mode ``long`` (one process): warm-up, then GRPO for ``--iters`` iterations at ``--lr``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[3] / "megatron_fleming" / "configs"
# V2PE delta 1/8: a 4-token tile spans half a position, so tiles end between integers
MODEL = ["model.overrides.language.vocab_size=320", "model.overrides.v2pe_delta=0.125"]
PROMPTS_PER_STEP = 8
#: Stage 3 on the 256 noisy conversations: 5 epochs (1280 conversations, 40 steps of 4 packed
#: sequences), each conversation drawing its V2PE delta as stage 3 trains.
WARMUP_EPOCHS = 5


def warmup(data: Path, work: Path) -> Path:
    from megatron_fleming.train.config import load_config
    from megatron_fleming.train.trainer import run

    out = work / "warmup"
    run(load_config(CONFIGS / "tiny_cpu.yaml", [
        f"data.path={data}", f"checkpoint.dir={out}", "train.conversations=null",
        f"train.epochs={WARMUP_EPOCHS}", "train.log_interval=10",
        "data.tokenizer.tiny_bpe_vocab=300", "data.dynamic_resolution=false",
        "data.task_encoder.tiling.max_tiles=1", "optimizer.lr=3.0e-3", "optimizer.min_lr=1.0e-3",
        "logging.tensorboard=false", *MODEL]))
    return out


def grpo(data: Path, warm: Path, out: Path, iters: int, *extra: str, lr: str = "1.0e-3") -> list[dict]:
    from megatron_fleming.grpo.config import load_grpo_config
    from megatron_fleming.grpo.run import run
    from megatron_fleming.train.callbacks import METRICS_FILE

    cfg = load_grpo_config(CONFIGS / "tiny_grpo.yaml", [
        f"data.path={data}", f"checkpoint.dir={out}", f"checkpoint.init_from={warm}",
        f"data.tokenizer.path={warm / 'tokenizer'}", "data.system_prompt=null",
        "rewards.format_weight=0.0", "grpo.max_response_len=3", "grpo.generations=8",
        f"grpo.prompts_per_step={PROMPTS_PER_STEP}", f"train.prompts={iters * PROMPTS_PER_STEP}",
        f"optimizer.lr={lr}",
        "train.log_interval=5", *MODEL, *extra])
    run(cfg)
    path = out / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mode", choices=("tp1", "tp2", "long"), required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--sft-data", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--lr", default="1.0e-3")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result: dict = {}
    warm = args.work / "warmup"
    if args.mode == "tp1":
        warmup(args.sft_data, args.work)
        result["rows"] = grpo(args.data, warm, args.work / "grpo", args.iters)
        resumed = args.work / "resumed"
        grpo(args.data, warm, resumed, args.iters, "train.exit_interval=2")
        result["resumed"] = grpo(args.data, warm, resumed, args.iters, "train.exit_interval=4")

        from megatron_fleming.grpo import train_module
        from megatron_fleming.grpo.consistency import LogprobDriftError

        build = train_module.GRPOTrainModule.__init__

        def integer_positions(self, *a, **k):  # the rollout engine's V2PE delta goes wrong
            build(self, *a, **k)
            self.engine.delta = 1.0

        train_module.GRPOTrainModule.__init__ = integer_positions
        try:
            grpo(args.data, warm, args.work / "drift", 3, "grpo.max_logprob_error_ratio=1.0001")
            result["drift"] = None
        except LogprobDriftError as e:
            result["drift"] = str(e)
        finally:
            train_module.GRPOTrainModule.__init__ = build
    elif args.mode == "long":
        warmup(args.sft_data, args.work)
        result["rows"] = grpo(args.data, warm, args.work / "grpo-long", args.iters, lr=args.lr)
    else:
        result["rows"] = grpo(args.data, warm, args.work / "grpo-tp2", args.iters,
                              "parallel.tensor_parallel=2", "train.exit_interval=4")
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
