"""The CPU shim, in a subprocess: it changes process-global torch state, so never in pytest's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHECKS = r"""
import torch
import megatron_fleming.cpu_shim as shim
from megatron.core.tensor_parallel import random as mrandom

assert not shim.cpu_shim_installed()
shim.install_cpu_shim()
shim.install_cpu_shim()  # idempotent
assert shim.cpu_shim_installed()

x = torch.empty(3, device="cuda")
assert x.device.type == "cpu"
assert torch.zeros(2, device=torch.device("cuda", 0)).device.type == "cpu"
assert x.cuda() is x and x.to("cuda").device.type == "cpu"
assert x.type() == "torch.cuda.FloatTensor", x.type()
assert torch.ones(1, dtype=torch.bfloat16).type() == "torch.cuda.BFloat16Tensor"
assert torch.cuda.current_device() == torch.device("cpu")
torch.cuda.synchronize(); torch.cuda.empty_cache()
assert torch.tensor([1.0], pin_memory=True).device.type == "cpu"

# megatron's RNG tracker keeps CPU streams: fork switches and restores the default generator.
tracker = mrandom.get_cuda_rng_tracker()
assert isinstance(tracker, shim.CpuRNGStatesTracker)
mrandom.model_parallel_cuda_manual_seed(5, tp_rank=0, ep_rank=0, etp_rank=0)
torch.manual_seed(0)
before = torch.get_rng_state()
with tracker.fork():
    a = torch.rand(4)
assert torch.equal(torch.get_rng_state(), before), "fork must restore the default stream"
with tracker.fork():
    b = torch.rand(4)
assert not torch.equal(a, b), "the forked stream must advance"
mrandom.model_parallel_cuda_manual_seed(5, tp_rank=0, ep_rank=0, etp_rank=0)
with tracker.fork():
    assert torch.equal(torch.rand(4), a), "same seed, same stream"
print("shim ok")
"""


def test_cpu_shim_in_a_fresh_process():
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore",
           "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", CHECKS], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "shim ok" in proc.stdout


def test_importing_the_shim_changes_nothing():
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    code = ("import torch, megatron_fleming.cpu_shim, megatron_fleming.model.parallel\n"
            "assert not megatron_fleming.cpu_shim.cpu_shim_installed()\n"
            "assert torch.empty(1).device.type == 'cpu'\n"
            "try:\n    torch.empty(1, device='cuda')\nexcept (RuntimeError, AssertionError):\n"
            "    print('untouched')\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "untouched" in proc.stdout
