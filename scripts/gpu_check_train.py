"""GPU check of the trainer on one GPU: bf16 vs FP8 through `fleming train`, asserted.

    bash scripts/gpu_check_train.sh [--band 0.02] [section.key=value ...]

Each mode is its own one-rank torchrun job of `megatron_fleming.train.run` on
`megatron_fleming/configs/gpu_check.yaml` (the ~1B `small` preset on the demo shards, packed
16-multiple rows, Transformer Engine layers), with a recording callback. Asserts, and exits
non-zero when one fails:

1. Transformer Engine is installed and the config runs TE layers (FP8 exists only there).
2. Both modes train the same steps on the same data, with finite losses.
3. FP8 tracks bf16: the mean loss of the last `LAST_STEPS` steps with FP8 is within `--band`
   (relative, default FP8_BAND) of bf16's.

It prints each step's loss, tokens/s, model TFLOP/s and MFU (against 989 TFLOP/s dense bf16 for
H100/H200 SXM unless ``--peak-tflops``) side by side, and writes everything to
``$OUT/gpu_check_train.json`` when $OUT is set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "megatron_fleming" / "configs" / "gpu_check.yaml"
#: FP8 (delayed scaling, hybrid E4M3/E5M2) vs bf16 from the same start on the same data: the
#: mean loss of the last steps may differ by this fraction of bf16's.
FP8_BAND = 0.02
LAST_STEPS = 3


class CheckFailed(AssertionError):
    pass


def check(ok: bool, message: str) -> None:
    print(("PASS " if ok else "FAIL ") + message, flush=True)
    if not ok:
        raise CheckFailed(message)


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


def run_mode(overrides: list[str], out: Path) -> list[dict]:
    """One torchrun job of this file in `--record-to` mode; returns its steps."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
           "--master-port", str(_free_port()), __file__, "--record-to", str(out), *overrides]
    subprocess.run(cmd, cwd=REPO, check=True)
    return json.loads(out.read_text())


def record(args: argparse.Namespace) -> None:
    """Inside torchrun: train with the given overrides, write each step's metrics."""
    from megatron_fleming.train.callbacks.base import Callback, StepMetrics
    from megatron_fleming.train.config import load_config
    from megatron_fleming.train.trainer import run

    class Recorder(Callback):
        def __init__(self) -> None:
            self.steps: list[dict] = []

        def on_step(self, m: StepMetrics) -> None:
            self.steps.append({"loss": m.loss, "step_time": m.step_time, "consumed": m.consumed,
                               "tokens_per_s": m.tokens_per_s, "model_tflops": m.model_tflops,
                               "data_wait": m.data_wait})

    recorder = Recorder()
    run(load_config(CONFIG, args.overrides), callbacks=(recorder,))
    Path(args.record_to).write_text(json.dumps(recorder.steps))


def compare_losses(bf16: list[float], fp8: list[float], band: float) -> dict:
    """The FP8 verdict on two runs' per-step losses (pure: the CPU test checks it)."""
    check(len(bf16) == len(fp8) >= LAST_STEPS,
          f"both modes trained the same steps ({len(bf16)} bf16, {len(fp8)} FP8, "
          f">= {LAST_STEPS})")
    check(all(math.isfinite(x) for x in bf16 + fp8), "all losses finite")
    ref = statistics.fmean(bf16[-LAST_STEPS:])
    got = statistics.fmean(fp8[-LAST_STEPS:])
    relative = abs(got - ref) / ref
    check(relative <= band, f"FP8 mean loss of the last {LAST_STEPS} steps {got:.4f} vs bf16 "
                            f"{ref:.4f}: {relative:.2%} <= {band:.0%}")
    return {"bf16_last_mean": ref, "fp8_last_mean": got, "relative_diff": relative,
            "band": band}


def compare(args: argparse.Namespace) -> int:
    import torch

    report: dict = {"band": args.band}
    try:
        check(torch.cuda.is_available(), "a GPU is visible")
        te = transformer_engine_version()
        check(te is not None,
              f"Transformer Engine installed ({te}); FP8 needs it (the 'gpu' extra)")
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops or (989.0 if ("H100" in name or "H200" in name) else None)
        report.update(gpu=name, transformer_engine=te, peak_tflops=peak)
        modes = {"bf16": ["parallel.transformer_impl=transformer_engine"],
                 "fp8": ["parallel.transformer_impl=transformer_engine", "fp8.enabled=true"]}
        steps: dict[str, list[dict]] = {}
        with tempfile.TemporaryDirectory() as scratch:
            for mode, extra in modes.items():
                print(f"--- {mode}", flush=True)
                run_dir = Path(scratch) / mode
                steps[mode] = run_mode([*args.overrides, *extra, f"checkpoint.dir={run_dir}"],
                                       run_dir.with_suffix(".json"))
        report["steps"] = steps
        print(f"\n{'step':>4} | {'bf16 loss':>9} {'tok/s':>8} {'MFU':>6} | "
              f"{'fp8 loss':>9} {'tok/s':>8} {'MFU':>6}")
        for i in range(max(len(s) for s in steps.values())):
            row = [f"{i + 1:>4}"]
            for mode in ("bf16", "fp8"):
                s = steps[mode][i] if i < len(steps[mode]) else None
                mfu = "n/a" if s is None or peak is None else f"{s['model_tflops'] / peak:.1%}"
                row.append("    missing" if s is None else
                           f"{s['loss']:>9.4f} {s['tokens_per_s']:>8.0f} {mfu:>6}")
            print(" | ".join(row))
        for mode, s in steps.items():
            warm = s[2:] or s
            tokens_per_s = statistics.median(x["tokens_per_s"] for x in warm)
            report[f"{mode}_median_tokens_per_s"] = tokens_per_s
            tflops = statistics.median(x["model_tflops"] for x in warm)
            report[f"{mode}_median_model_tflops"] = tflops
            report[f"{mode}_mfu"] = tflops / peak if peak else None
            print(f"{mode}: median tokens/s {tokens_per_s:.0f}, model "
                  f"TFLOP/s {tflops:.1f}, MFU {'n/a' if not peak else f'{tflops / peak:.1%}'}")
        report["fp8_vs_bf16"] = compare_losses([s["loss"] for s in steps["bf16"]],
                                               [s["loss"] for s in steps["fp8"]], args.band)
        report["passed"] = True
    except CheckFailed as e:
        report.update(passed=False, failed=str(e))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check_train.json").write_text(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--band", type=float, default=FP8_BAND,
                        help="allowed relative difference of FP8's final loss from bf16's")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--record-to", help="(internal) train one mode inside torchrun, write here")
    parser.add_argument("overrides", nargs="*", help="config overrides for both modes")
    args = parser.parse_args()
    if args.record_to:
        record(args)
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
