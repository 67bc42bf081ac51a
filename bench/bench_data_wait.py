"""The demo's data wait: how much of each training step waits for the loader, same process.

Runs `make demo`'s training (megatron_fleming/configs/tiny_demo.yaml: the tiny VLM, one CPU rank,
on the ultrasound build) through the real trainer twice: with data loading in the training
process (``data.num_workers=0``, the baseline: every step waits for all of its decoding) and with
one loader worker (the demo's setting: decoding overlaps the step; tiles leave the worker as
uint8 and small tensors by value). Prints, per run, the data wait as a fraction of step time over
the steps after the first (the first includes the worker's start) and the ratio of the two.
The machine's load average is printed too: on a shared host the wait includes time the worker
spends waiting for a core.

Usage: python bench/bench_data_wait.py [--shards DIR] [--conversations 400]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "megatron_fleming" / "configs" / "tiny_demo.yaml"


def _single_process_env() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))


def measure(shards: Path, workers: int, conversations: int, run_dir: Path) -> dict:
    from megatron_fleming.train.callbacks.base import Callback, StepMetrics
    from megatron_fleming.train.config import load_config
    from megatron_fleming.train.trainer import run

    class Recorder(Callback):
        def __init__(self) -> None:
            self.steps: list[StepMetrics] = []

        def on_step(self, m: StepMetrics) -> None:
            self.steps.append(m)

    recorder = Recorder()
    _single_process_env()
    cfg = load_config(CONFIG, [f"data.path={shards}", f"data.num_workers={workers}",
                               f"train.conversations={conversations}", f"checkpoint.dir={run_dir}",
                               "checkpoint.save_at_end=false", "logging.tensorboard=false"])
    run(cfg, callbacks=(recorder,))
    steady = recorder.steps[1:]
    return {"steps": len(recorder.steps),
            "wait_fraction": sum(m.data_wait for m in steady) / sum(m.step_time for m in steady),
            "median_step_s": statistics.median(m.step_time for m in steady),
            "median_wait_ms": 1e3 * statistics.median(m.data_wait for m in steady),
            "first_wait_s": recorder.steps[0].data_wait}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=Path, help="the ultrasound build; default: build it now")
    ap.add_argument("--conversations", type=int, default=400)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        shards = args.shards
        if shards is None:
            from datakit.build import SAMPLE_SOURCES, build
            from datakit.recipe import load_recipe

            shards = build(load_recipe("ultrasound"), SAMPLE_SOURCES, Path(tmp) / "us").out
        rows = {workers: measure(shards, workers, args.conversations, Path(tmp) / f"run{workers}")
                for workers in (0, 1)}
    print(f"tiny_demo, {args.conversations} conversations, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'loader':24s} {'steps':>5s} {'step s':>7s} {'wait ms':>8s} {'wait %':>7s} "
          f"{'first wait s':>12s}")
    for workers, r in rows.items():
        name = "in process (baseline)" if workers == 0 else "1 worker (demo)"
        print(f"{name:24s} {r['steps']:5d} {r['median_step_s']:7.3f} {r['median_wait_ms']:8.1f} "
              f"{100 * r['wait_fraction']:6.2f}% {r['first_wait_s']:12.2f}")
    ratio = rows[1]["wait_fraction"] / rows[0]["wait_fraction"]
    print(f"data wait, 1 worker / in process: {ratio:.3f}")


if __name__ == "__main__":
    main()
