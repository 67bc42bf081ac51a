"""``fleming eval run`` end to end on every benchmark's sample folder with a tiny random
InternVL: the fleming backend (our engine, the default) twice in fresh processes gives the same
bytes, and the same responses, parsed answers and scores as the transformers backend (greedy);
``score`` on its responses: the same items and summary. Settings a backend cannot honour are
refused before any model loads.

The fleming runs are subprocesses: the engine runs megatron-core on CPU through the process-wide
CPU shim (see tests/megatron_fleming/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datakit.benchmarks import BENCHMARKS, read_benchmark
from datakit.benchmarks.samples import write_samples
from megatron_fleming.cli import main as fleming_main
from megatron_fleming.eval.tiny_model import write_tiny_internvl

REPO = Path(__file__).resolve().parents[3]
GENERATION = ["--max-new-tokens", "6", "--batch-size", "4", "--device", "cpu"]


def eval_args(setup: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["eval", "run", "--benchmark", ",".join(BENCHMARKS), "--data", str(setup["data"]),
            "--out", str(out), *GENERATION, *extra]


def run_process(args: list[str], launcher: list[str] = ()) -> None:
    """``python [launcher] -m megatron_fleming.cli ARGS`` in a fresh process, one thread a rank."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, *launcher, "-m", "megatron_fleming.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evalrun")
    write_samples(root / "data")
    write_tiny_internvl(root / "model", seed=3)
    return {"root": root, "data": root / "data", "model": root / "model"}


@pytest.fixture(scope="module")
def fleming_runs(setup) -> tuple[Path, Path]:
    """Two runs of the default backend on the Hugging Face folder (converted in memory)."""
    outs = setup["root"] / "fleming1", setup["root"] / "fleming2"
    for out in outs:
        run_process(eval_args(setup, out, "--hf", str(setup["model"])))
    return outs


@pytest.fixture(scope="module")
def transformers_run(setup) -> Path:
    out = setup["root"] / "transformers"
    assert fleming_main(eval_args(setup, out, "--hf", str(setup["model"]), "--backend", "transformers")) == 0
    return out


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fleming_run_on_every_benchmark_twice_gives_the_same_bytes(setup, fleming_runs):
    first, second = fleming_runs
    got = files(first)
    assert got == files(second)
    for name in BENCHMARKS:
        items = read_benchmark(name, setup["data"] / name).items
        rows = [json.loads(line) for line in got[f"{name}/items.jsonl"].decode().splitlines()]
        assert [r["id"] for r in rows] == [i.qid for i in items]
        assert all(r["response"] is not None and r["rule"] for r in rows)
    prompts = {name: json.loads(got[f"{name}/items.jsonl"].decode().splitlines()[0])["prompt"] for name in BENCHMARKS}
    assert prompts["m3d_vqa"].count("<image>") == 11 and prompts["medvideo"].count("<image>") == 3
    assert prompts["iu_xray"].startswith("<image_1>: <image>\n<image_2>: <image>\n\n")
    assert prompts["pmc_vqa"].startswith("\n<image>\n\nQuestion: Which imaging modality is shown?\nOptions: \n A:CT ")
    totals = json.loads(got["summary.json"])["benchmarks"]
    assert set(totals) == set(BENCHMARKS) and "summary_cider" in totals["medvideo"]["headline"]
    run = json.loads(got["run.json"])
    assert (run["backend"], run["source"], run["v2pe_delta"], run["tensor_parallel"]) == (
        "fleming", f"hf:{setup['model']}", 1.0, 1)
    assert got["table3.png"].startswith(b"\x89PNG")


def test_fleming_and_transformers_backends_answer_alike(fleming_runs, transformers_run):
    ours, reference = files(fleming_runs[0]), files(transformers_run)
    responses = []
    for name in BENCHMARKS:
        for f in ("responses.jsonl", "items.jsonl", "summary.json"):
            assert ours[f"{name}/{f}"] == reference[f"{name}/{f}"], (name, f)
        responses += [json.loads(line)["response"] for line in ours[f"{name}/responses.jsonl"].decode().splitlines()]
    # The model's answers depend on the image and the prompt, so equality says something.
    assert len(set(responses)) >= 5 and all(responses)
    assert json.loads(reference["run.json"])["backend"] == "transformers"


def test_score_on_run_responses_reproduces_run(setup, fleming_runs):
    first = fleming_runs[0]
    for name in ("slake", "m3d_vqa"):
        out = setup["root"] / f"scored_{name}"
        assert fleming_main(["eval", "score", "--benchmark", name, "--data", str(setup["data"] / name),
                             "--responses", str(first / name / "responses.jsonl"), "--out", str(out)]) == 0
        for f in ("items.jsonl", "summary.json", "responses.jsonl"):
            assert (out / name / f).read_bytes() == (first / name / f).read_bytes(), (name, f)


@pytest.mark.parametrize("extra, message", [
    (["--mcore", "CKPT", "--backend", "transformers"], "--backend transformers needs --hf"),
    (["--hf", "CKPT", "--backend", "transformers", "--tp", "2"], "--tp are the fleming engine's settings"),
    (["--hf", "CKPT", "--backend", "transformers", "--v2pe-delta", "0.25"], "--v2pe-delta are the fleming"),
    (["--hf", "CKPT", "--v2pe-delta", "0"], "v2pe_delta \\(0.0\\) must be in"),
])
def test_settings_a_backend_cannot_honour_are_refused(setup, extra, message):
    with pytest.raises(SystemExit, match=message):
        fleming_main(eval_args(setup, setup["root"] / "refused", *extra))
    assert not (setup["root"] / "refused").exists()


@pytest.mark.slow
def test_fleming_backend_on_tp2_mcore_and_dp2_ranks_answers_as_one_rank(setup, fleming_runs, tmp_path):
    """Under torchrun: TP2 on a converted Megatron checkpoint, and two data-parallel replicas on
    the Hugging Face folder, each give the one-rank run's responses."""
    mcore = tmp_path / "mcore"
    run_process(["convert", "hf-to-mcore", "--hf", str(setup["model"]), "--out", str(mcore), "--tp", "2"])
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    runs = {"tp2": (tmp_path / "tp2", ["--mcore", str(mcore), "--tp", "2"]),
            "dp2": (tmp_path / "dp2", ["--hf", str(setup["model"])])}
    for out, extra in runs.values():
        run_process(eval_args(setup, out, *extra), launcher=torchrun)
    one = files(fleming_runs[0])
    for label, (out, _) in runs.items():
        got = files(out)
        for name in BENCHMARKS:
            assert got[f"{name}/responses.jsonl"] == one[f"{name}/responses.jsonl"], (label, name)
    assert json.loads((runs["tp2"][0] / "run.json").read_text())["tensor_parallel"] == 2
    assert json.loads((runs["dp2"][0] / "run.json").read_text())["data_parallel"] == 2
