"""A stage counted in conversations: one epoch consumes every conversation once (± the last pack).

Packing puts several conversations in one sequence of the global batch, so a stage counted in
steps would run several epochs. The real trainer (`megatron_fleming.train.run`, one CPU rank, the
tiny model) trains `train.epochs: 1` on a shard of 24 conversations, one packed sequence per step;
the keys of every batch it draws are recorded.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from datakit.energon_format import prepare, write_dataset_yaml
from datakit.shard_writer import AtomicTarWriter, iter_samples

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "train_workers" / "train_run.py"
CONFIG = REPO / "megatron_fleming" / "configs" / "tiny_cpu.yaml"
N = 24


@pytest.fixture(scope="module")
def epoch_run(ultrasound_build, tmp_path_factory, torchrun):
    root = tmp_path_factory.mktemp("epoch")
    shard = root / "data"
    source = sorted((ultrasound_build.out / "train").glob("*.tar"))[0]
    with AtomicTarWriter(shard / "train" / "shard-000000.tar") as writer:
        for _, (key, parts) in zip(range(N), iter_samples(source)):
            writer.add_sample(key, list(parts.items()))
    write_dataset_yaml(shard, "epoch")
    prepare(shard, ["train/shard-000000.tar"])
    result = torchrun(str(WORKER), 1, [
        "--keys", "--config", str(CONFIG), f"data.path={shard}", f"checkpoint.dir={root / 'run'}",
        "train.conversations=null", "train.epochs=1", "train.global_batch_size=1",
        "data.shuffle_buffer_size=null", "data.max_samples_per_sequence=null",
        "data.packing_buffer_size=8", "data.task_encoder.max_seq_len=2048",
        "checkpoint.save_at_end=false"], timeout=240)
    return result


def test_one_epoch_consumes_each_conversation_once(epoch_run):
    steps, keys = epoch_run["steps"], epoch_run["batch_keys"]
    assert epoch_run["reason"] == "finished"
    assert all(s["total"] == N for s in steps)
    assert len(keys) == len(steps) > N // 8  # one pack per step, several conversations a pack
    assert max(len(k) for k in keys) > 1
    # The count steps by the conversations of each pack, and the stage stops at the pack that
    # reaches N: every conversation was trained on once, at most the last pack reaches past.
    assert [s["consumed"] for s in steps] == [sum(map(len, keys[:i + 1])) for i in range(len(keys))]
    assert steps[-2]["consumed"] < N <= steps[-1]["consumed"]
    before_last = Counter(k for pack in keys[:-1] for k in pack)
    assert max(before_last.values()) == 1
    every = Counter(k for pack in keys for k in pack)
    assert len(every) == N and sum(every.values()) - N < len(keys[-1])
    assert steps[-1]["epoch"] == pytest.approx(steps[-1]["consumed"] / N)


def test_the_schedule_follows_the_count(epoch_run):
    """Each step's lr is the cosine schedule at the conversations consumed so far (tiny_cpu: peak
    1e-3, min 1e-4, warmup 10% of 24 = 3 conversations), not at the step number."""
    steps = epoch_run["steps"]
    peak, low, warm = 1.0e-3, 1.0e-4, math.ceil(0.1 * N)
    for s in steps:
        progress = min(1.0, (s["consumed"] - warm) / (N - warm))
        assert s["consumed"] > warm
        assert s["lr"] == pytest.approx(low + (peak - low) * 0.5 * (1 + math.cos(math.pi * progress)))
    assert steps[-1]["lr"] == pytest.approx(low)
