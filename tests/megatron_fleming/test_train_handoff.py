"""Stage hand-off through the public CLI: stage 2 starts from stage 1's final weights bit for bit
(a step at learning rate 0 leaves them as loaded), its frozen LLM stays bit-identical while the
ViT and projector train, GRPO starts from its predecessor's weights the same way, and a stage
whose tokenizer differs from its predecessor's is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "megatron_fleming" / "configs"
FROZEN_LR = ["optimizer.lr=0.0", "optimizer.min_lr=0.0", "optimizer.weight_decay=0.0", "schedule.warmup_ratio=0.0"]
COMPONENTS = ("vision_model.", "vision_projection.", "language_model.")


def _fleming(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "megatron_fleming.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _train(command: str, config: str, data: Path, run: Path, *overrides: str) -> None:
    res = _fleming(command, "--config", str(CONFIGS / config), "--data", str(data), f"checkpoint.dir={run}",
                   *overrides)
    assert res.returncode == 0, res.stderr[-4000:]


def _weights(run: Path, tmp: Path) -> dict[str, torch.Tensor]:
    """The model tensors of a run's latest checkpoint (megatron's sharded keys), read without ranks."""
    iteration = int((run / "latest_checkpointed_iteration.txt").read_text())
    dump = tmp / f"{run.name}.pt"
    dcp_to_torch_save(str(run / f"iter_{iteration:07d}"), str(dump))
    state = torch.load(dump, weights_only=False)
    return {k: v for k, v in state.items() if k.startswith(COMPONENTS) and isinstance(v, torch.Tensor)}


@pytest.fixture(scope="module")
def stage1(stage_builds, tmp_path_factory):
    run = tmp_path_factory.mktemp("handoff") / "stage1"
    _train("train", "tiny_stage1.yaml", stage_builds["stage1"].out, run, "train.conversations=12")
    return run


def _handoff(stage1: Path) -> list[str]:
    return [f"checkpoint.init_from={stage1}", f"data.tokenizer.path={stage1 / 'tokenizer'}",
            "data.tokenizer.tiny_bpe_vocab=null"]


def test_stage2_starts_from_stage1_bit_for_bit_and_keeps_its_llm(stage1, stage_builds, tmp_path):
    before = _weights(stage1, tmp_path)
    assert {k.split(".")[0] for k in before} == {"vision_model", "vision_projection", "language_model"}

    start = tmp_path / "stage2-start"
    _train("train", "tiny_stage2.yaml", stage_builds["stage2"].out, start, *_handoff(stage1), "train.conversations=1",
           *FROZEN_LR)
    loaded = _weights(start, tmp_path)
    assert loaded.keys() == before.keys()
    assert all(torch.equal(loaded[k], before[k]) for k in before)

    trained = tmp_path / "stage2"
    _train("train", "tiny_stage2.yaml", stage_builds["stage2"].out, trained, *_handoff(stage1), "train.conversations=8")
    after = _weights(trained, tmp_path)
    language = [k for k in before if k.startswith("language_model.")]
    vision = [k for k in before if not k.startswith("language_model.")]
    assert language and all(torch.equal(after[k], before[k]) for k in language)  # frozen: bit-identical
    moved = [k for k in vision if not torch.equal(after[k], before[k])]
    assert len(moved) > len(vision) // 2  # the ViT and the projector trained
    progress = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert progress[0]["iteration"] == 1  # a fresh count: nothing of stage 1's progress carried over


def test_grpo_starts_from_its_predecessor_bit_for_bit(stage1, stage_builds, tmp_path):
    start = tmp_path / "stage4-start"
    _train("grpo", "tiny_stage4.yaml", stage_builds["grpo"].out, start, *_handoff(stage1), "train.prompts=2",
           "grpo.prompts_per_step=2", "grpo.rollout_prompts=2", "grpo.generations=2", *FROZEN_LR)
    before, loaded = _weights(stage1, tmp_path), _weights(start, tmp_path)
    assert loaded.keys() == before.keys() and all(torch.equal(loaded[k], before[k]) for k in before)


def test_a_stage_with_another_tokenizer_is_refused(stage1, stage_builds, tmp_path):
    res = _fleming("train", "--config", str(CONFIGS / "tiny_stage2.yaml"), "--data", str(stage_builds["stage2"].out),
                   f"checkpoint.dir={tmp_path / 'stage2'}", f"checkpoint.init_from={stage1}", "train.conversations=40")
    assert res.returncode != 0
    assert f"was trained with the tokenizer in {stage1 / 'tokenizer'}" in res.stderr
    assert f"data.tokenizer.path={stage1 / 'tokenizer'}" in res.stderr
