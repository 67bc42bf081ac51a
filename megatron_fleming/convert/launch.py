"""Run a conversion function on the `tp * pp` ranks it needs.

Conversion shards a checkpoint the way the trainer will: every rank builds its own megatron-core
model shard and saves it through dist-checkpointing. Two ways to get those ranks:

- under ``torchrun --nproc-per-node tp*pp`` (or srun with torchrun's environment): the ranks
  exist already; their world size must equal ``tp * pp``.
- from a plain process (``fleming convert ... --tp 2``): the ranks are spawned here, on this
  machine, joined through a free local port; a world of one runs in the calling process.

The rank function initialises torch.distributed and megatron's groups itself
(`megatron_fleming.model.parallel.initialize_parallel`: gloo + CPU shim, or NCCL on GPU).
Rank 0's return value comes back to the caller (through a file, from spawned ranks). The rank
function is named by ``"module:function"`` and imported on the ranks only, so the launching
process never pays for megatron-core's import.
"""

from __future__ import annotations

import importlib
import os
import pickle
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp



def _resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    return device


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _rank_env(rank: int, world_size: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))


def _spawned(rank: int, world_size: int, port: int, result: str, target: str, args: tuple) -> None:
    _rank_env(rank, world_size, port)
    value = _resolve(target)(*args)
    if rank == 0:
        Path(result).write_bytes(pickle.dumps(value))


def run_on_ranks(target: str, world_size: int, *args: Any) -> Any:
    """``function(*args)`` on `world_size` ranks, `target` being ``"module:function"``.

    Returns rank 0's result (under torchrun: this rank's). An exception on any spawned rank is
    raised here.
    """
    if "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:
        launched = int(os.environ["WORLD_SIZE"])
        if launched != world_size:
            raise RuntimeError(
                f"launched with WORLD_SIZE={launched}, but this conversion runs on {world_size} "
                "rank(s): hf-to-mcore on tp*pp, mcore-to-hf on one; set torchrun --nproc-per-node "
                "accordingly, or run without torchrun")
        return _resolve(target)(*args)
    env_before = dict(os.environ)
    try:
        if world_size == 1:
            _rank_env(0, 1, free_port())
            return _resolve(target)(*args)
        with tempfile.TemporaryDirectory(prefix="fleming-ranks-") as tmp:
            result = os.path.join(tmp, "rank0.pkl")
            mp.start_processes(_spawned, args=(world_size, free_port(), result, target, args),
                               nprocs=world_size, join=True, start_method="spawn")
            return pickle.loads(Path(result).read_bytes())
    finally:
        os.environ.clear()
        os.environ.update(env_before)
