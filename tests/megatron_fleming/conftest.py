"""Fixtures for the model tests: run a worker script under torchrun in its own subprocess.

Multi-process tests never share the pytest process: the CPU shim and megatron's parallel state
are process-global. Each launch gets a free port, a timeout, one thread per rank, and writes its
result as JSON (rank 0 only prints and writes).
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
DIST_DIR = Path(__file__).resolve().parent / "dist"


def _free_port() -> int:
    """A free port BELOW the ephemeral range (32768+): a port the kernel handed out with bind(0)
    can be handed again to one of gloo's own connections before torchrun binds it."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


class TorchrunError(AssertionError):
    pass


def run_torchrun(script: str, nproc: int, args: list[str], out: Path, timeout: float = 180) -> dict:
    """Launch `dist/<script>` on `nproc` CPU ranks; return the JSON it wrote to `out`."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           str(DIST_DIR / script), "--out", str(out), *args]
    try:
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise TorchrunError(f"{script} x{nproc} timed out after {timeout}s\n"
                            f"{(exc.stdout or '')[-3000:]}\n{(exc.stderr or '')[-3000:]}") from exc
    if proc.returncode != 0 or not out.exists():
        raise TorchrunError(f"{script} x{nproc} {' '.join(args)} failed (rc={proc.returncode})\n"
                            f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}")
    return json.loads(out.read_text())


@pytest.fixture(scope="session")
def torchrun(tmp_path_factory):
    """`torchrun(script, nproc, args, timeout=...)` -> the worker's JSON result."""
    results = tmp_path_factory.mktemp("torchrun")
    counter = iter(range(10_000))

    def launch(script: str, nproc: int, args: list[str], timeout: float = 180) -> dict:
        return run_torchrun(script, nproc, args, results / f"result{next(counter)}.json", timeout)

    return launch


@pytest.fixture(scope="session")
def model_checks(torchrun):
    """One run of `dist/model_checks_worker.py` (tiny preset, V2PE delta 1/8: a 4-token tile ends
    half-way between integers, so the ceil before the next text token matters): its JSON and
    tensors, shared by the V2PE and packing tests."""
    meta = torchrun("model_checks_worker.py", 1, ["--delta", "0.125"])
    return meta, torch.load(meta["tensors"])
