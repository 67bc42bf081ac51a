"""Where a GRPO iteration's time goes, and how it scales with the generations per prompt (N).

A random-weight VLM (``--preset``: tiny by default; one process; CPU fp32 by default, or
``--device cuda --dtype bf16 --impl transformer_engine``) on the toy letter task, ``--prompts``
prompts per iteration, N = 2, 4, 8 samples each, responses up to ``--response-len`` tokens. The
reward is a format pattern that random text meets about half the time (its last character is one
of a-m),
so groups have variance and every iteration runs its updates; the run's own metrics give the
split rollout / reward / reference / check / update and the rollout and update tokens/s. The
first iteration (start-up) is left out; medians of the rest. Ratios are against N = 2 in the same
process. Also reported: the rollout-vs-trainer log-prob drift (max |delta|, error ratio).
Usage: python bench/bench_grpo.py [--iters 5] [--prompts 4] [--response-len 32] [--json OUT]
(scripts/gpu_check_grpo.sh runs it on a GPU with the ~1B `small` preset in bf16).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
from pathlib import Path

from megatron_fleming.grpo.config import load_grpo_config
from megatron_fleming.grpo.run import run
from megatron_fleming.grpo.toy_task import write_letter_task
from megatron_fleming.train.callbacks import METRICS_FILE
from megatron_fleming.train.cli import _single_process_defaults

CONFIG = Path(__file__).resolve().parents[1] / "megatron_fleming" / "configs" / "tiny_grpo.yaml"
PHASES = ("rollout", "reward", "reference", "check", "update")


def one(data: Path, out: Path, n: int, args) -> dict[str, float]:
    # The tiny BPE puts <IMG_CONTEXT> at id 5; a larger preset keeps its (unused) vocabulary and
    # has 448 px tiles (256 tokens), so its prompts and packed rows are longer. Rows stay near
    # what one prompt and response need: CPU attention over a packed row is quadratic in it.
    model = (["model.overrides.language.vocab_size=320"] if args.preset == "tiny" else
             ["model.overrides.image_context_token_id=5", "data.max_prompt_len=1024",
              f"grpo.max_tokens_per_microbatch={2 * (1024 + args.response_len)}"])
    cfg = load_grpo_config(CONFIG, [
        f"data.path={data}", f"checkpoint.dir={out}", "checkpoint.init_from=null",
        "checkpoint.save_at_end=false", "data.tokenizer.path=null",
        "data.tokenizer.tiny_bpe_vocab=300", f"model.preset={args.preset}", *model,
        f"parallel.device={args.device}", f"parallel.dtype={args.dtype}",
        f"parallel.transformer_impl={args.impl}", "grpo.max_logprob_error_ratio=null",
        f"grpo.generations={n}", f"grpo.prompts_per_step={args.prompts}",
        f"grpo.rollout_prompts={args.prompts}", f"grpo.max_response_len={args.response_len}",
        "rewards.accuracy_weight=0.0", "rewards.format_pattern=(?s).*[a-m]",
        f"train.prompts={(args.iters + 1) * args.prompts}", "train.log_interval=1000"])
    run(cfg)
    rows = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()][1:]
    keys = [f"time_{p}" for p in PHASES] + [f"time_share_{p}" for p in PHASES] + [
        "step_time", "rollout_tokens_per_s", "train_tokens_per_s", "response_length"]
    out = {k: statistics.median(r[k] for r in rows) for k in keys}
    checked = [r for r in rows if r["logprob_tokens"] > 0]
    out["logprob_max_abs_delta"] = max((r["logprob_max_abs_delta"] for r in checked), default=float("nan"))
    out["logprob_error_ratio"] = max((r["logprob_error_ratio"] for r in checked), default=float("nan"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--response-len", type=int, default=32)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--impl", choices=("local", "transformer_engine"), default="local")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _single_process_defaults()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_letter_task(root / "letters", count=64, seed=0, shapes="XOTL")
        results = {n: one(data, root / f"n{n}", n, args) for n in (2, 4, 8)}
    base = results[2]
    print(f"{args.preset} VLM, {args.device} {args.dtype} {args.impl}, {args.prompts} prompts x N "
          f"samples, <= {args.response_len} response tokens, median of {args.iters} iterations")
    print("N | step s (x N=2) | rollout / reward / reference / check / update share | "
          "rollout tok/s (x) | update tok/s (x) | response len | logprob max|d|, error ratio")
    for n, r in results.items():
        shares = " / ".join(f"{100 * r[f'time_share_{p}']:.0f}%" for p in PHASES)
        print(f"{n} | {r['step_time']:.2f} ({r['step_time'] / base['step_time']:.2f}) | {shares} | "
              f"{r['rollout_tokens_per_s']:.0f} ({r['rollout_tokens_per_s'] / base['rollout_tokens_per_s']:.2f}) | "
              f"{r['train_tokens_per_s']:.0f} ({r['train_tokens_per_s'] / base['train_tokens_per_s']:.2f}) | "
              f"{r['response_length']:.1f} | {r['logprob_max_abs_delta']:.2e}, "
              f"{r['logprob_error_ratio']:.6f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
