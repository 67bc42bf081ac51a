"""`fleming pipeline` orchestration: the chain planned from a pipeline YAML, completion markers
and fingerprints (a rerun skips finished steps, a changed recipe redoes exactly the steps below
it, --redo reruns a step and its dependents), refused configs, and a real data-only chain run
twice (the second run starts no process)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from megatron_fleming.cli import main
from megatron_fleming.pipeline import state
from megatron_fleming.pipeline.chain import Chain
from megatron_fleming.pipeline.config import load_pipeline
from megatron_fleming.pipeline.heldout import held_out, held_out_groups
from megatron_fleming.pipeline.local import run_local

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "megatron_fleming" / "configs" / "pipelines" / "tiny.yaml"


def _chain(config: Path, out: Path) -> Chain:
    return Chain.build(load_pipeline(config), config, out)


def _finish(chain: Chain) -> None:
    """Mark every step done with its planned fingerprint and create its outputs (no command runs)."""
    for step in chain.steps:
        for path in step.outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
        chain.markers.mark_started(step.name, chain.fingerprints[step.name])
        chain.markers.mark_done(step.name, chain.fingerprints[step.name], 1.0)


def _copy_with(tmp_path: Path, edit) -> Path:
    doc = yaml.safe_load(TINY.read_text())
    edit(doc)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_tiny_chain_hands_each_stage_the_previous_weights(tmp_path):
    chain = _chain(TINY, tmp_path / "out")
    names = [s.name for s in chain.steps]
    assert names[:3] == ["build-heldout_base", "heldout", "decontam-heldout"]
    assert names.index("decontam-heldout") < min(names.index(f"build-{b}") for b in ("stage1", "stage2", "stage3"))
    assert names[-1] == "report"
    out = chain.layout.out
    argv = {s.name: s.argv for s in chain.steps}
    for stage, previous in (("stage1", "init"), ("stage2", "stage1"), ("stage3", "stage2"), ("stage4", "stage3")):
        assert f"checkpoint.init_from={out / 'runs' / previous}" in argv[stage]
        assert f"checkpoint.dir={out / 'runs' / stage}" in argv[stage]
        assert f"data.tokenizer.path={out / 'tokenizer'}" in argv[stage]
        assert "--mcore" in argv[f"eval-{stage}"] and str(out / "runs" / stage) in argv[f"eval-{stage}"]
    assert argv["stage4"][2] == "grpo" and argv["stage3"][2] == "train"
    # every training build is checked against the registry; the held-out base build against nothing
    for b in ("stage1", "stage2", "stage3", "modality"):
        assert argv[f"build-{b}"][argv[f"build-{b}"].index("--decontam") + 1] == str(out / "decontam")
    assert str(out / "heldout" / "no-benchmarks") in argv["build-heldout_base"]
    assert argv["heldout"][argv["heldout"].index("--per-source") + 1] == "2"


def test_held_out_per_source_takes_the_same_count_of_every_source():
    """A fraction of a handful of records can take most of one source; a count takes each
    source's lowest-ranked records (all of a smaller source), the same on every call."""
    by_source = {"a": {f"a:{i}" for i in range(5)}, "b": {f"b:{i}" for i in range(40)}, "c": {"c:0"}}
    got = held_out_groups(by_source, 17, fraction=None, per_source=2)
    assert {s: len({g for g in got if g.startswith(s + ":")}) for s in by_source} == {"a": 2, "b": 2, "c": 1}
    assert got == held_out_groups({k: set(sorted(v)) for k, v in reversed(by_source.items())}, 17,
                                  fraction=None, per_source=2)
    assert got != held_out_groups(by_source, 18, fraction=None, per_source=2)
    by_fraction = held_out_groups(by_source, 17, fraction=0.3, per_source=None)
    assert by_fraction == {g for v in by_source.values() for g in v if held_out(17, g, 0.3)}
    with pytest.raises(ValueError, match="exactly one"):
        held_out_groups(by_source, 17, fraction=0.3, per_source=2)


def test_rerun_skips_and_a_changed_recipe_redoes_exactly_what_is_below_it(tmp_path):
    recipe = tmp_path / "stage2.yaml"
    shutil.copy(REPO / "datakit" / "recipes" / "stage2.yaml", recipe)

    def edit(doc):
        doc["data"]["builds"]["stage2"] = str(recipe)
        doc["tokenizer"]["builds"] = ["stage1", "stage3"]  # so the tokenizer does not read stage 2

    config = _copy_with(tmp_path, edit)
    chain = _chain(config, tmp_path / "out")
    assert set(chain.statuses().values()) == {"todo"}
    _finish(chain)
    again = _chain(config, tmp_path / "out")
    assert again.fingerprints == chain.fingerprints
    assert set(again.statuses().values()) == {"done"}

    recipe.write_text(recipe.read_text().replace("seed: 20251202", "seed: 20251299"))
    changed = _chain(config, tmp_path / "out")
    redo = {n for n, s in changed.statuses().items() if s != "done"}
    assert redo == {"build-stage2", "stage2", "stage3", "stage4", "eval-stage2", "eval-stage3", "eval-stage4",
                    "report"}
    assert all(changed.statuses()[n] == "stale" for n in redo)

    # --redo: the step and everything below it, whatever the markers say
    assert {n for n, s in again.statuses({"stage3"}).items() if s != "done"} == {
        "stage3", "stage4", "eval-stage3", "eval-stage4", "report"}


def test_an_unfinished_step_with_unchanged_inputs_resumes_and_a_changed_one_is_cleaned(tmp_path):
    chain = _chain(TINY, tmp_path / "out")
    step = chain.step("stage3")
    run = chain.layout.run("stage3")
    run.mkdir(parents=True)
    (run / "iter_0000100").mkdir()
    chain.markers.mark_started("stage3", chain.fingerprints["stage3"])
    assert chain.statuses()["stage3"] == "resume"  # the trainer resumes from its checkpoint
    chain.markers.mark_started("stage3", "another fingerprint")
    assert chain.statuses()["stage3"] == "stale"
    chain.clean(step)
    assert not run.exists() and chain.markers.started("stage3") is None


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["stages"][1].update(data="nowhere"), "stage stage2: data 'nowhere'"),
    (lambda d: d["stages"][0].update(init_from="stage2"), "stage stage1: init_from 'stage2'"),
    (lambda d: d.pop("decontam"), "no decontam entry registers it"),
    (lambda d: d["evaluation"]["benchmarks"].update(nope={"data": "x"}), "evaluation.benchmarks ['nope']"),
    (lambda d: d["evaluation"].update(after=["stage9"]), "evaluation.after ['stage9']"),
    (lambda d: d["data"].update(blends={"mix": {"stage9": 1.0}}), "data.blends.mix blends ['stage9']"),
    (lambda d: d["stages"][0].update(epochs=1), "unknown keys ['epochs'] in stages[0]"),
    (lambda d: d["heldout"].update(fraction=0.3), "exactly one of fraction and per_source"),
    (lambda d: d["heldout"].pop("per_source"), "exactly one of fraction and per_source"),
    (lambda d: d["heldout"].update(per_source=0), "heldout.per_source 0 must be an integer >= 1"),
])
def test_refused_configs_name_the_setting(tmp_path, edit, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_pipeline(_copy_with(tmp_path, edit))


def test_a_data_only_chain_runs_then_a_rerun_starts_nothing(tmp_path, monkeypatch):
    """Real steps: a datakit build, a blend and the report; the rerun must not start a process."""
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({
        "name": "data-only", "data": {"builds": {"stage1": "stage1"}, "blends": {"mix": {"stage1": 1.0}}}}))
    out = tmp_path / "out"
    lines: list[str] = []
    assert run_local(_chain(config, out), echo=lines.append) == 0
    assert (out / "data" / "stage1" / "build.json").is_file() and (out / "data" / "mix.yaml").is_file()
    report = (out / "report" / "report.md").read_text()
    assert "| stage1 | 4 | 1 | 0 |" in report  # train, val, contaminated samples of the build

    def no_process(*args, **kwargs):
        raise AssertionError(f"a rerun with nothing changed started {args[0]}")

    monkeypatch.setattr(subprocess, "run", no_process)
    lines.clear()
    assert run_local(_chain(config, out), echo=lines.append) == 0
    assert lines[0].startswith("pipeline data-only: 3 of 3 steps done, 0 to run")
    assert all(line.endswith("done, skipped") for line in lines[1:4])


def _cli(capsys, *args: str) -> str:
    assert main(["pipeline", *args]) == 0
    return capsys.readouterr().out


def test_dry_run_prints_the_chain_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    printed = _cli(capsys, "--config", str(TINY), "--out", str(out), "--dry-run")
    assert "0 of 21 steps done, 21 to run" in printed
    assert "stage2 [todo] after build-stage2, stage1, tokenizer" in printed
    assert f"checkpoint.init_from={out / 'runs' / 'stage1'}" in printed
    assert not out.exists()


@pytest.mark.parametrize("size, nodes, tp", [("8b", 1, "2"), ("38b", 4, "8")])
def test_the_paper_pipelines_render_their_sbatch_chain(size, nodes, tp, tmp_path, capsys):
    config = REPO / "megatron_fleming" / "configs" / "pipelines" / f"{size}.yaml"
    out = tmp_path / "out"
    printed = _cli(capsys, "--config", str(config), "--out", str(out), "--slurm", "--dry-run")
    jobs = {line.split(":")[0].strip(): line for line in printed.splitlines()[1:]}
    # data builds: plan -> array of slices -> merge, after every benchmark is registered
    for b in ("stage1", "stage2", "stage3"):
        assert "afterok: decontam-vqa_rad, decontam-slake" in jobs[f"build-{b}-plan"]
        assert jobs[f"build-{b}-slices"].endswith(f"(afterok: build-{b}-plan)")
        assert jobs[f"build-{b}-merge"].endswith(f"(afterok: build-{b}-slices)")
    slices = (out / "slurm" / "build-stage3-slices.sbatch").read_text()
    assert "#SBATCH --array=0-63" in slices and "datakit.cli slice stage3" in slices
    # the stages: each on its nodes, each after its data and the stage before it; eval after each
    assert jobs["stage1"].endswith("(afterok: build-stage1-merge, init)")
    assert jobs["stage2"].endswith("(afterok: build-stage2-merge, stage1)")
    assert jobs["stage4"].endswith("(afterok: grpo-data, stage3)")
    for point in ("init", "stage1", "stage2", "stage3", "stage4"):
        assert jobs[f"eval-{point}"].endswith(f"(afterok: {point})")
    assert "eval-stage4" in jobs["report"]
    for stage, previous in (("stage2", "stage1"), ("stage4", "stage3")):
        text = (out / "slurm" / f"{stage}.sbatch").read_text()
        assert f"#SBATCH --nodes={nodes}" in text and "#SBATCH --gpus-per-node=8" in text
        assert "#SBATCH --requeue" in text and "scripts/slurm/train_launch.sh" in text
        assert f"configs/{size}_{stage}.yaml" in text and f"checkpoint.init_from={out / 'runs' / previous}" in text
        assert "FLEMING_ON_FINISH=" in text and f"FLEMING_COMMAND={'grpo' if stage == 'stage4' else 'train'}" in text
    init = (out / "slurm" / "init.sbatch").read_text()
    assert f"convert hf-to-mcore --hf" in init and f"--tp {tp}" in init
    assert f"--tp {tp}" in (out / "slurm" / "eval-stage3.sbatch").read_text()


def test_a_recipe_given_as_a_relative_path_is_read_from_the_repository_root(tmp_path, monkeypatch):
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"name": "paths", "data": {"builds": {"s1": "datakit/recipes/stage1.yaml"}}}))
    monkeypatch.chdir(tmp_path)  # the recipe is not under the current folder
    step = _chain(config, tmp_path / "out").step("build-s1")
    recipe = REPO / "datakit" / "recipes" / "stage1.yaml"
    assert step.inputs == (recipe,) and str(recipe) in step.argv


def test_a_marker_written_by_another_job_records_the_time_since_the_step_started(tmp_path):
    """Slurm: a build starts in its plan job and ends in its merge job, a stage ends in the
    launcher's hook; the report's wall time per step comes from the markers."""
    assert state.main([str(tmp_path), "build-x", "f" * 64, "started"]) == 0
    started = tmp_path / ".steps" / "build-x.started"
    os.utime(started, (time.time() - 90, time.time() - 90))
    assert state.main([str(tmp_path), "build-x", "f" * 64, "done"]) == 0
    done = state.Markers(tmp_path / ".steps").done("build-x")
    assert done["fingerprint"] == "f" * 64 and 89 <= done["seconds"] < 120
