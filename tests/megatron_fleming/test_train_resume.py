"""Resume is exact: N steps, stop, resume to the stage's end == uninterrupted (CPU, fp32).

Each leg is its own torchrun job of the real trainer (`megatron_fleming.train.run`) on the demo
shards: the reference trains the whole stage; the split run stops after N steps
(``train.exit_interval``, the same checkpoint-and-exit path as SIGTERM), and a fresh job resumes
from that checkpoint. The
losses, learning rates and grad norms of every step, the final weights, the optimizer's step
counts and hyper-parameters, and the RNG states must be identical. (The distributed optimizer's
saved buckets are not compared raw: alignment gaps between parameters hold uninitialised memory;
a wrong Adam state shows in the weights and losses after the resume anyway.) With TP2, and with
PP2 where each rank's loader runs in a worker process (energon's worker checkpointing path). V2PE
steps are drawn per sample (tiny_cpu's v2pe_train_deltas), so the loader replays those too.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "train_workers" / "train_run.py"
CONFIG = REPO / "megatron_fleming" / "configs" / "tiny_cpu.yaml"
N = 2  # steps before the stop
CONVERSATIONS = 64  # the stage: about 4 steps of 4 packed sequences
PER_RANK_OBJECTS = ("rng_state", "dataloader_state")


def _flat(folder: Path, scratch: Path) -> dict:
    """Every entry of a dist-checkpoint by global key, read without a process group."""
    target = scratch / f"{folder.parent.name}-{folder.name}.pt"
    dcp_to_torch_save(str(folder), str(target))
    return torch.load(target, weights_only=False)


def _weights(flat: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in flat.items() if isinstance(v, torch.Tensor)
            and not k.startswith(PER_RANK_OBJECTS + ("optimizer.",))}


def _optimizer_common(flat: dict) -> dict:
    """The optimizer's non-tensor state: param groups with lr, weight decay and Adam step."""
    return {k: v for k, v in flat.items() if k.startswith("optimizer.")
            and not isinstance(v, torch.Tensor) and "per_bucket" not in k}


def _rng_states(flat: dict) -> list:
    """Each rank's saved RNG states (a pickled blob per rank; a one-item list in this reader)."""
    blobs = [flat[k] for k in sorted(k for k in flat if k.startswith("rng_state/"))]
    return [pickle.loads((b[0] if isinstance(b, list) else b).numpy().tobytes()) for b in blobs]


def _same_rng(a: dict, b: dict) -> bool:
    return (a["python"] == b["python"] and torch.equal(a["torch"], b["torch"])
            and all(torch.equal(a["tracker"][k], b["tracker"][k]) for k in a["tracker"])
            and str(a["numpy"]) == str(b["numpy"]))


@pytest.mark.parametrize("layout", [
    ["parallel.tensor_parallel=2", "parallel.sequence_parallel=true",
     "data.task_encoder.pad_to_multiple_of=2"],
    ["parallel.pipeline_parallel=2", "data.num_workers=1"],
], ids=["tp2-sp", "pp2-loader-worker"])
def test_stop_and_resume_equals_uninterrupted(torchrun, ultrasound_build, tmp_path, layout):
    common = ["--config", str(CONFIG), f"data.path={ultrasound_build.out}",
              f"train.conversations={CONVERSATIONS}", *layout]
    full = torchrun(str(WORKER), 2, [*common, f"checkpoint.dir={tmp_path / 'full'}"], timeout=240)
    split = tmp_path / "split"
    first = torchrun(str(WORKER), 2, [*common, f"checkpoint.dir={split}",
                                      f"train.exit_interval={N}"], timeout=240)
    second = torchrun(str(WORKER), 2, [*common, f"checkpoint.dir={split}"], timeout=240)

    assert full["reason"] == "finished" and second["reason"] == "finished"
    assert first["reason"] == "exit_interval"
    total = len(full["steps"])
    assert total > N + 1 and full["steps"][-1]["consumed"] >= CONVERSATIONS
    assert [s["iteration"] for s in first["steps"]] == list(range(1, N + 1))
    assert [s["iteration"] for s in second["steps"]] == list(range(N + 1, total + 1))
    resumed = first["steps"] + second["steps"]
    # The consumed-conversation count (the schedule's clock) continues across the resume.
    for key in ("consumed", "epoch", "loss", "lr", "grad_norm", "loss_tokens"):
        assert [s[key] for s in resumed] == [s[key] for s in full["steps"]], key
    assert len({s["loss"] for s in full["steps"]}) == total  # it trained: every loss differs

    end = f"iter_{total:07d}"
    a, b = _flat(tmp_path / "full" / end, tmp_path), _flat(split / end, tmp_path)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and any(k.startswith("language_model") for k in wa)
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == []
    oa, ob = _optimizer_common(a), _optimizer_common(b)
    assert oa and oa == ob
    assert all(g["step"] == total for v in oa.values() for item in v for g in item["param_groups"])
    ra, rb = _rng_states(a), _rng_states(b)
    assert len(ra) == 2 and all(_same_rng(x, y) for x, y in zip(ra, rb))
