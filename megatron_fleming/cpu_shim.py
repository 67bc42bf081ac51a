"""CPU shim: run the *real* megatron-core 0.16.1 code on CPU under gloo.

megatron-core hard-codes CUDA in many places and no flag avoids it: `torch.cuda.current_device()`
for buffers (rotary, attention, DDP buffers, p2p shapes), `device="cuda"` in the schedules, the
optimizers and grad clipping, `param.type() == 'torch.cuda.FloatTensor'` checks in grad clipping
and the distributed optimizer, and CUDA RNG states in the model-parallel RNG tracker. This module
bends exactly those places so that TP, PP, DP + distributed optimizer and dist-checkpointing run
unchanged on CPU processes talking gloo.

It is for tests and `--device cpu` smoke runs only: never on a GPU machine, never at import time.
`install_cpu_shim()` activates it (idempotent); what it does:

1. `torch.cuda.current_device()` returns the CPU device; `synchronize`, `empty_cache`,
   `set_device` and the memory statistics become no-ops / zeros; `get_rng_state` and
   `set_rng_state` act on the CPU generator (megatron's activation recompute saves them).
2. A global `TorchFunctionMode` rewrites `device="cuda..."` to CPU in every torch call, turns
   `.cuda()` into a no-op, drops `pin_memory=True`, and reports floating tensors' `.type()` as
   `torch.cuda.*Tensor` so megatron's dtype checks accept CPU tensors.
3. megatron's RNG tracker is replaced by `CpuRNGStatesTracker`, which keeps CPU generator states
   for the data-parallel / tensor-parallel / expert RNG streams.

Fusions must be off (masked_softmax_fusion, bias_*_fusion, apply_rope_fusion,
gradient_accumulation_fusion, persist_layer_norm) and layers local (no Transformer Engine):
`megatron_fleming.model.transformer_config` does that for `ParallelConfig(device="cpu")`, and
`megatron_fleming.model.parallel.initialize_parallel` installs this shim for it.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["CpuRNGStatesTracker", "cpu_shim_installed", "install_cpu_shim"]

_LOCK = threading.Lock()
_MODE: TorchFunctionMode | None = None


def _is_cuda_device(device: Any) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    return False


def _to_cpu_device(value: Any) -> Any:
    return torch.device("cpu") if _is_cuda_device(value) else value


class _CudaToCpuMode(TorchFunctionMode):
    """Rewrites CUDA placements to CPU in every torch call made while it is active."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            # megatron asserts 'torch.cuda.FloatTensor' etc.; report CPU tensors as such.
            return name.replace("torch.", "torch.cuda.", 1) if "cuda" not in name else name
        if "device" in kwargs:
            kwargs["device"] = _to_cpu_device(kwargs["device"])
        if kwargs.get("pin_memory"):
            kwargs["pin_memory"] = False
        if func is torch.Tensor.to and len(args) > 1:
            args = (args[0],) + tuple(_to_cpu_device(a) for a in args[1:])
        return func(*args, **kwargs)


class CpuRNGStatesTracker:
    """megatron's model-parallel RNG tracker, keeping CPU generator states instead of CUDA ones.

    Same contract as `megatron.core.tensor_parallel.random.CudaRNGStatesTracker` (add / fork /
    get_states / set_states): `fork(name)` swaps the CPU generator to the named stream and back.
    """

    def __init__(self, *_args, **_kwargs) -> None:
        self.use_cudagraphable_rng = False
        self.is_inference_rng_tracker = False
        self.reset()

    def is_initialized(self) -> bool:
        return self._is_initialized

    def reset(self) -> None:
        self._is_initialized = False
        self.states_: dict[str, torch.Tensor] = {}
        self.seeds_: set[int] = set()

    def get_states(self) -> dict[str, torch.Tensor]:
        return dict(self.states_)

    def set_states(self, states: dict[str, torch.Tensor]) -> None:
        self._is_initialized = True
        self.states_ = states

    def add(self, name: str, seed: int) -> None:
        self._is_initialized = True
        if seed in self.seeds_:
            raise ValueError(f"RNG seed {seed} is already tracked")
        if name in self.states_:
            raise ValueError(f"RNG state {name!r} is already tracked")
        self.seeds_.add(seed)
        saved = torch.get_rng_state()
        torch.manual_seed(seed)
        self.states_[name] = torch.get_rng_state()
        torch.set_rng_state(saved)

    @contextlib.contextmanager
    def fork(self, name: str = "model-parallel-rng"):
        if name not in self.states_:
            raise KeyError(f"RNG state {name!r} was never added; call model_parallel_cuda_manual_seed")
        saved = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(saved)


def _patch_torch_cuda() -> None:
    cuda = torch.cuda
    cuda.current_device = lambda: torch.device("cpu")
    cuda.set_device = lambda *_a, **_k: None
    cuda.synchronize = lambda *_a, **_k: None
    cuda.empty_cache = lambda: None
    cuda.get_rng_state = lambda *_a, **_k: torch.get_rng_state()
    cuda.set_rng_state = lambda state, *_a, **_k: torch.set_rng_state(state)
    for stat in ("memory_allocated", "max_memory_allocated", "memory_reserved",
                 "max_memory_reserved"):
        setattr(cuda, stat, lambda *_a, **_k: 0)
    cuda.reset_peak_memory_stats = lambda *_a, **_k: None


def _patch_megatron_rng() -> None:
    from megatron.core.tensor_parallel import random as mrandom

    mrandom._get_cuda_rng_state = lambda *_a, **_k: torch.get_rng_state()
    mrandom._set_cuda_rng_state = lambda state, *_a, **_k: torch.set_rng_state(state)
    mrandom.CudaRNGStatesTracker = CpuRNGStatesTracker
    mrandom._CUDA_RNG_STATE_TRACKER = CpuRNGStatesTracker()
    mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True


def install_cpu_shim() -> None:
    """Make megatron-core run on CPU in this process. Idempotent; refuses where CUDA exists."""
    global _MODE
    with _LOCK:
        if _MODE is not None:
            return
        if torch.cuda.is_available():
            raise RuntimeError(
                "install_cpu_shim() is for CPU-only processes; this one sees a CUDA device. "
                "Build the model with device='cuda' instead of installing the shim."
            )
        _patch_torch_cuda()
        _patch_megatron_rng()
        mode = _CudaToCpuMode()
        mode.__enter__()  # stays active for the life of the process
        _MODE = mode


def cpu_shim_installed() -> bool:
    """Whether `install_cpu_shim()` has run in this process."""
    return _MODE is not None
