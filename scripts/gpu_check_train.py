"""bf16 vs FP8 training steps on one GPU through the real trainer, losses and step times side by side.

    python scripts/gpu_check_train.py [--steps N] [section.key=value ...]

Each mode is its own one-rank torchrun job of `megatron_fleming.train.run` on
`megatron_fleming/configs/gpu_check.yaml` (the `small` preset on the demo shards); a recording
callback writes every step's loss and time. FP8 needs Transformer Engine: without it the script
says so, runs the bf16 part with megatron's local layers, and marks the FP8 column as not run.
Results are printed and, when $OUT is set, written to $OUT/gpu_check_train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "megatron_fleming" / "configs" / "gpu_check.yaml"


def transformer_engine_version() -> str | None:
    try:
        import transformer_engine
    except Exception:  # absent, or present but broken: either way FP8 cannot run
        return None
    return getattr(transformer_engine, "__version__", "unknown")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_mode(overrides: list[str], out: Path) -> dict:
    """One torchrun job of this file in `--record-to` mode; returns its JSON."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
           "--master-port", str(_free_port()), __file__, "--record-to", str(out), *overrides]
    subprocess.run(cmd, cwd=REPO, check=True)
    return json.loads(out.read_text())


def record(args: argparse.Namespace) -> None:
    """Inside torchrun: train with the given overrides, write per-step loss and time."""
    from megatron_fleming.train.callbacks.base import Callback, StepMetrics
    from megatron_fleming.train.config import load_config
    from megatron_fleming.train.trainer import run

    class Recorder(Callback):
        def __init__(self) -> None:
            self.steps: list[dict] = []

        def on_step(self, m: StepMetrics) -> None:
            self.steps.append({"loss": m.loss, "step_time": m.step_time,
                               "tokens_per_s": m.tokens_per_s, "data_wait": m.data_wait})

    recorder = Recorder()
    run(load_config(CONFIG, args.overrides), callbacks=(recorder,))
    Path(args.record_to).write_text(json.dumps(recorder.steps))


def compare(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_check_train: no GPU visible")
    te = transformer_engine_version()
    print(f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, Transformer Engine "
          f"{te or 'ABSENT'}")
    if te is None:
        print("Transformer Engine is not installed: FP8 cannot run here. Running the bf16 part "
              "only, with megatron's local layers (install the 'gpu' extra for TE and FP8).")
    common = [f"train.iters={args.steps}", *args.overrides]
    modes = {"bf16": ["parallel.transformer_impl=" + ("transformer_engine" if te else "local")]}
    if te:
        modes["fp8"] = ["parallel.transformer_impl=transformer_engine", "fp8.enabled=true"]
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for mode, extra in modes.items():
            print(f"--- {mode}")
            run_dir = Path(scratch) / mode
            results[mode] = run_mode([*common, *extra, f"checkpoint.dir={run_dir}"],
                                     run_dir.with_suffix(".json"))
    print(f"\n{'step':>4} | {'bf16 loss':>10} {'bf16 s':>8} | {'fp8 loss':>10} {'fp8 s':>8}")
    for i in range(args.steps):
        row = [f"{i + 1:>4}"]
        for mode in ("bf16", "fp8"):
            step = results.get(mode, [None] * args.steps)[i]
            row.append("   not run          " if step is None else
                       f"{step['loss']:>10.4f} {step['step_time']:>8.3f}")
        print(" | ".join(row))
    summary = {"gpu": torch.cuda.get_device_name(), "transformer_engine": te, "steps": results}
    for mode, steps in results.items():
        times = [s["step_time"] for s in steps[2:]] or [s["step_time"] for s in steps]
        summary[f"{mode}_median_step_s"] = statistics.median(times)
        print(f"{mode}: median step {statistics.median(times):.3f}s after 2 warm-up steps, "
              f"final loss {steps[-1]['loss']:.4f}")
    if "fp8" in results:
        print(f"fp8 / bf16 step time: {summary['fp8_median_step_s'] / summary['bf16_median_step_s']:.3f}")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check_train.json").write_text(json.dumps(summary, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--record-to", help="(internal) train one mode inside torchrun, write here")
    parser.add_argument("overrides", nargs="*", help="config overrides for both modes")
    args = parser.parse_args()
    (record if args.record_to else compare)(args)


if __name__ == "__main__":
    main()
