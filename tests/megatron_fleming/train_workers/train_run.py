"""Torchrun worker: `megatron_fleming.train.run` on a config + overrides, recording every step.

Rank 0 writes {"reason", "steps": [{iteration, consumed, total, epoch, loss, lr, grad_norm,
loss_tokens, skipped}], "batch_keys"} to --out. The run itself is the library's, unchanged: this
only adds a recording callback and, with --keys, records the conversation keys of every batch the
trainer draws from its loader.
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
        self.steps.append({"iteration": m.iteration, "consumed": m.consumed, "total": m.total,
                           "epoch": m.epoch, "loss": m.loss, "lr": m.lr,
                           "grad_norm": m.grad_norm, "loss_tokens": m.loss_tokens,
                           "skipped": m.skipped})


class KeyRecorder:
    """The trainer's loader, unchanged, noting the conversation keys of each batch it yields."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self.keys: list[list[str]] = []

    def __iter__(self):
        for batch in self.loader:
            self.keys.append(list(batch.__key__))
            yield batch

    def __getattr__(self, name: str):
        return getattr(self.loader, name)


def main() -> None:
    from megatron_fleming.train.config import load_config
    from megatron_fleming.train.trainer import run

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--keys", action="store_true", help="record each batch's keys")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    loaders: list[KeyRecorder] = []
    if args.keys:
        from megatron_fleming.train import trainer

        build = trainer.build_train_loader

        def recording_loader(*a, **kw):
            loaders.append(KeyRecorder(build(*a, **kw)))
            return loaders[-1]

        trainer.build_train_loader = recording_loader
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("megatron").setLevel(logging.WARNING)
    recorder = Recorder()
    reason = run(load_config(args.config, args.overrides), callbacks=(recorder,))
    if int(os.environ.get("RANK", "0")) == 0:  # run() has shut the process group down
        with open(args.out, "w") as handle:
            json.dump({"reason": reason, "steps": recorder.steps,
                       "batch_keys": loaders[0].keys if loaders else None}, handle)


if __name__ == "__main__":
    main()
