"""Torchrun worker: `megatron_fleming.train.run` on a config + overrides, recording every step.

Rank 0 writes {"reason", "steps": [{iteration, loss, lr, grad_norm, loss_tokens, skipped}]} to
--out. The run itself is the library's, unchanged: this only adds a recording callback.
Heavy imports stay inside `main`: megatron's checkpoint writer spawns a helper process that
re-imports this file, and it should not pay for torch and megatron.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

from megatron_fleming.train.callbacks.base import Callback, StepMetrics


class Recorder(Callback):
    def __init__(self) -> None:
        self.steps: list[dict] = []

    def on_step(self, m: StepMetrics) -> None:
        self.steps.append({"iteration": m.iteration, "loss": m.loss, "lr": m.lr,
                           "grad_norm": m.grad_norm, "loss_tokens": m.loss_tokens,
                           "skipped": m.skipped})


def main() -> None:
    from megatron_fleming.train.config import load_config
    from megatron_fleming.train.trainer import run

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("megatron").setLevel(logging.WARNING)
    recorder = Recorder()
    reason = run(load_config(args.config, args.overrides), callbacks=(recorder,))
    if int(os.environ.get("RANK", "0")) == 0:  # run() has shut the process group down
        with open(args.out, "w") as handle:
            json.dump({"reason": reason, "steps": recorder.steps}, handle)


if __name__ == "__main__":
    main()
