"""The GPU check scripts, on CPU: everything around the GPU parts runs and asserts.

No GPU here: `scripts/gpu_check_model.py --device cpu` runs its packed == masked check and the
timed training steps on the CPU shim (fp32, local layers; the TE-module check needs a GPU), and
`scripts/gpu_check_train.py` must refuse to pass without a GPU and judge FP8 against bf16 by
its stated band.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"


def _env(out: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore", "CUDA_VISIBLE_DEVICES": "", "OUT": str(out)}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_check_runs_its_assertions_on_cpu(tmp_path):
    from conftest import _free_port

    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
         "--master-port", str(_free_port()), str(SCRIPTS / "gpu_check_model.py"), "--device",
         "cpu", "--preset", "tiny", "--seq", "128", "--tiles", "2", "--steps", "2",
         "--warmup", "1"], env=_env(tmp_path), cwd=REPO, capture_output=True, text=True,
        timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check_model.json").read_text())
    assert report["passed"] and report["transformer_impl"] == "local"
    packed = report["packed_vs_masked"]
    assert packed["padding"] > 0 and packed["scored_tokens"] > 50
    assert packed["max_abs_diff"] <= report["tolerances"]["packed_max"] == 1e-4
    assert len(report["training"]["losses"]) == 3 and report["training"]["tokens_per_s"] > 0
    assert proc.stdout.count("PASS ") == 3 and "FAIL" not in proc.stdout


def test_train_check_fails_without_a_gpu(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPTS / "gpu_check_train.py")],
                          env=_env(tmp_path), cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "FAIL a GPU is visible" in proc.stdout
    assert json.loads((tmp_path / "gpu_check_train.json").read_text())["passed"] is False


def test_fp8_band_judgement():
    script = _load("gpu_check_train")
    bf16 = [11.9, 10.2, 9.0, 8.1, 7.6, 7.2]
    close = [11.9, 10.3, 9.1, 8.2, 7.7, 7.3]  # the last 3 steps: 1.3% above bf16
    verdict = script.compare_losses(bf16, close, band=0.02)
    assert verdict["relative_diff"] == pytest.approx(0.3 / 22.9)
    with pytest.raises(script.CheckFailed, match="FP8 mean loss"):
        script.compare_losses(bf16, [x * 1.05 for x in bf16], band=0.02)
    with pytest.raises(script.CheckFailed, match="same steps"):
        script.compare_losses(bf16, close[:-1], band=0.02)
    with pytest.raises(script.CheckFailed, match="finite"):
        script.compare_losses(bf16, close[:-1] + [float("nan")], band=0.02)
