"""Checkpoints that resume exactly, through megatron dist-checkpointing.

Layout of ``checkpoint.dir``::

    config.yaml                          resolved config of the run (written at every start)
    latest_checkpointed_iteration.txt    the commit point: written last, atomically
    iter_0000100/                        one megatron dist-checkpoint per save
    tokenizer/                           only for the tiny BPE of tests and demos
    tensorboard/

An ``iter_*`` folder holds the model chunks (``model``, or ``model0``...), the optimizer
(distributed-optimizer buckets, ``dp_reshardable``), and per rank two objects: ``rng_state``
(Python, NumPy, torch, CUDA and megatron's model-parallel RNG streams) and ``dataloader_state``
(energon's `save_state_rank`: which samples every worker has produced). Common values — the
iteration, the scheduler, progress counters, the parallel layout and the config — are saved once by
rank 0. A save that dies half-way leaves the tracker on the previous checkpoint.

Per-rank states travel as pickled bytes in a uint8 tensor: megatron reads checkpoint files with
`torch.load`, whose default safe mode refuses arbitrary Python objects such as energon's states.
"""

from __future__ import annotations

import pickle
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject

from megatron_fleming.convert.mcore_checkpoint import RECORD_FILE, ConversionRecord
from megatron_fleming.model.config import VLMConfig
from megatron_fleming.train.config import CheckpointSection, ModelSection
from megatron_fleming.train.optim import prepare_optimizer_for_load, restore_adam_steps
from megatron_fleming.train.train_module import StageModel

TRACKER = "latest_checkpointed_iteration.txt"
# Megatron-LM's default: each rank writes its own buckets, no gathering (resharding only over DP).
OPTIMIZER_METADATA = {"distrib_optim_sharding_type": "dp_reshardable"}


def iteration_dir(root: str | Path, iteration: int) -> Path:
    return Path(root) / f"iter_{iteration:07d}"


def latest_iteration(root: str | Path) -> int | None:
    tracker = Path(root) / TRACKER
    if not tracker.is_file():
        return None
    return int(tracker.read_text().strip())


def resolve_checkpoint(path: str | Path) -> Path:
    """A dist-checkpoint folder, or a run folder whose tracker names its latest checkpoint."""
    path = Path(path)
    latest = latest_iteration(path)
    if latest is not None:
        return iteration_dir(path, latest)
    if (path / "metadata.json").is_file():
        return path
    raise FileNotFoundError(f"{path} is neither a megatron dist-checkpoint (no metadata.json) nor "
                            f"a run folder with {TRACKER}")


def parallel_layout() -> dict[str, int]:
    return {"tensor_parallel": parallel_state.get_tensor_model_parallel_world_size(),
            "pipeline_parallel": parallel_state.get_pipeline_model_parallel_world_size(),
            "data_parallel": parallel_state.get_data_parallel_world_size(),
            "world_size": torch.distributed.get_world_size()}


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state(),
             "tracker": tensor_parallel.get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _per_rank_object(key: str, value: Any) -> ShardedObject:
    blob = torch.frombuffer(bytearray(pickle.dumps(value)), dtype=torch.uint8)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return ShardedObject(key, blob, (world,), (rank,), replica_id=0)


def _unpickle(blob: torch.Tensor) -> Any:
    return pickle.loads(blob.numpy().tobytes())


def saved_model_config(folder: Path) -> VLMConfig | None:
    """The model a checkpoint holds: a conversion's record, or a training run's saved config."""
    if (folder / RECORD_FILE).is_file():
        return ConversionRecord.read(folder).vlm
    config = dist_checkpointing.load_common_state_dict(str(folder)).get("config")
    if not isinstance(config, dict) or "model" not in config:
        return None
    return ModelSection(**config["model"]).build()


def check_vocabulary(folder: Path, vlm: VLMConfig) -> None:
    """The padded vocabulary is part of the weights' shape: say which setting to change."""
    saved = saved_model_config(folder)
    if saved is None:
        return
    have, want = saved.language.padded_vocab_size, vlm.language.padded_vocab_size
    if have != want or saved.language.vocab_size != vlm.language.vocab_size:
        raise ValueError(
            f"{folder} holds a vocabulary of {saved.language.vocab_size} tokens padded to {have} "
            f"rows (language.vocab_pad_multiple {saved.language.vocab_pad_multiple}), but this "
            f"run's model pads {vlm.language.vocab_size} to {want}: set "
            f"model.overrides.language.vocab_pad_multiple: {saved.language.vocab_pad_multiple} "
            "(or convert again with `fleming convert hf-to-mcore --make-vocab-size-divisible-by`"
            " x --tp giving this run's multiple)")


class Checkpointer:
    """Saves and restores everything a run needs to continue as if never stopped."""

    def __init__(self, cfg: CheckpointSection) -> None:
        self.cfg = cfg
        self.root = Path(cfg.dir)

    def _state(self, module: StageModel, *, is_loading: bool, loader=None,
                common: dict | None = None) -> dict:
        state = module.model_sharded_state_dict()
        state["optimizer"] = module.optimizer.sharded_state_dict(
            state, is_loading=is_loading, metadata=OPTIMIZER_METADATA)
        state["rng_state"] = _per_rank_object("rng_state", None if is_loading else rng_state())
        state["dataloader_state"] = _per_rank_object(
            "dataloader_state", None if is_loading else loader.save_state_rank())
        state.update(common or {})
        return state

    def save(self, iteration: int, module: StageModel, loader, progress: dict[str, Any],
             config: dict[str, Any]) -> float:
        """Every rank calls this at a step boundary; returns the seconds it took."""
        start = time.perf_counter()
        folder = iteration_dir(self.root, iteration)
        if torch.distributed.get_rank() == 0:
            folder.mkdir(parents=True, exist_ok=True)
        torch.distributed.barrier()
        module.sync_params()
        common = {"iteration": iteration, "scheduler": module.scheduler.state_dict(),
                  "progress": progress, "parallel_layout": parallel_layout(), "config": config}
        state = self._state(module, is_loading=False, loader=loader, common=common)
        dist_checkpointing.save(state, str(folder))
        torch.distributed.barrier()
        if torch.distributed.get_rank() == 0:
            tmp = self.root / (TRACKER + ".tmp")
            tmp.write_text(f"{iteration}\n")
            tmp.replace(self.root / TRACKER)
            self._prune(iteration)
        torch.distributed.barrier()
        return time.perf_counter() - start

    def _prune(self, newest: int) -> None:
        if self.cfg.keep_last is None:
            return
        newest_dir = iteration_dir(self.root, newest)
        older = sorted(p for p in self.root.glob("iter_*") if p.is_dir() and p != newest_dir)
        for old in older[: max(0, len(older) - (self.cfg.keep_last - 1))]:
            shutil.rmtree(old, ignore_errors=True)

    def resume(self, module: StageModel, loader) -> dict[str, Any] | None:
        """Restore the latest checkpoint of ``checkpoint.dir``; None if there is none."""
        iteration = latest_iteration(self.root)
        if iteration is None:
            return None
        folder = iteration_dir(self.root, iteration)
        common = dist_checkpointing.load_common_state_dict(str(folder))
        saved, now = common["parallel_layout"], parallel_layout()
        if saved != now:
            raise RuntimeError(
                f"{folder} was saved with layout {saved} but this run has {now}: the RNG and data "
                "loader states only resume on the same layout. Resume with the same TP/PP/DP, or "
                "start a new run with checkpoint.init_from set to this folder (weights only)")
        prepare_optimizer_for_load(module.optimizer)
        state = dist_checkpointing.load(self._state(module, is_loading=True), str(folder))
        with torch.no_grad():  # fp32 main params are views of the weights: in-place copies
            module.load_model_state_dict(state)
            module.optimizer.load_state_dict(state["optimizer"])
        restore_adam_steps(module.optimizer)
        module.scheduler.load_state_dict(state["scheduler"])
        loader.restore_state_rank(_unpickle(state["dataloader_state"]))
        set_rng_state(_unpickle(state["rng_state"]))
        return {"iteration": state["iteration"], **state["progress"]}

    def init_model(self, module: StageModel, path: str | Path) -> Path:
        """Model weights only (a converted checkpoint or another stage's run), any TP/PP."""
        folder = resolve_checkpoint(path)
        check_vocabulary(folder, module.vlm)
        state = dist_checkpointing.load(module.model_sharded_state_dict(), str(folder))
        module.load_model_state_dict(state)
        # Optimizers with separate fp32 main weights (bf16, distributed) must copy them again.
        module.optimizer.reload_model_params()
        return folder
