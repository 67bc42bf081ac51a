"""``fleming eval run`` end to end on every benchmark's sample folder with a tiny random
InternVL (transformers backend), twice: the same bytes; ``score`` on its responses: the same
items and summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.benchmarks import BENCHMARKS, read_benchmark
from datakit.benchmarks.samples import write_samples
from megatron_fleming.cli import main as fleming_main
from megatron_fleming.eval.tiny_model import write_tiny_internvl


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evalrun")
    write_samples(root / "data")
    write_tiny_internvl(root / "model", seed=3)
    return {"root": root, "data": root / "data", "model": root / "model"}


def run(setup, out: Path) -> None:
    assert fleming_main(["eval", "run", "--benchmark", ",".join(BENCHMARKS), "--data", str(setup["data"]),
                         "--hf", str(setup["model"]), "--out", str(out), "--max-new-tokens", "4",
                         "--batch-size", "4", "--device", "cpu"]) == 0


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_every_benchmark_twice_gives_the_same_bytes(setup):
    first, second = setup["root"] / "out1", setup["root"] / "out2"
    run(setup, first)
    run(setup, second)
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
    assert json.loads(got["run.json"])["backend"] == "transformers"
    assert got["table3.png"].startswith(b"\x89PNG")


def test_score_on_run_responses_reproduces_run(setup):
    first = setup["root"] / "out1"
    if not (first / "slake" / "responses.jsonl").exists():
        run(setup, first)
    for name in ("slake", "m3d_vqa"):
        out = setup["root"] / f"scored_{name}"
        assert fleming_main(["eval", "score", "--benchmark", name, "--data", str(setup["data"] / name),
                             "--responses", str(first / name / "responses.jsonl"), "--out", str(out)]) == 0
        for f in ("items.jsonl", "summary.json", "responses.jsonl"):
            assert (out / name / f).read_bytes() == (first / name / f).read_bytes(), (name, f)


def test_fleming_backend_slot_is_refused_until_wired(setup):
    with pytest.raises(NotImplementedError, match="megatron_fleming.generate"):
        fleming_main(["eval", "run", "--benchmark", "slake", "--data", str(setup["data"]), "--mcore",
                      str(setup["model"]), "--backend", "fleming", "--out", str(setup["root"] / "x")])
