"""A tiny VLM over-fits a handful of datakit samples, and bad samples in its shard are skipped and
counted while training goes on.

One shard holds 6 real single-turn samples of the demo build (images + one question each, split
from its multi-turn conversations) and, between
them, a sample with corrupt image bytes, one whose JSON lists a medium the tar lacks, and one too
long for the sequence budget. The real trainer (`megatron_fleming.train.run`, one CPU rank, tiny
preset, fp32) trains on it for 2,600 conversations (about 56 steps of 4 packed sequences).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.energon_format import prepare, write_dataset_yaml
from datakit.sample import canonical_json, turn_docs
from datakit.shard_writer import AtomicTarWriter, iter_samples

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "train_workers" / "train_run.py"
CONFIG = REPO / "megatron_fleming" / "configs" / "tiny_cpu.yaml"
GOOD = 6
CONVERSATIONS = 2600  # consumed: trained on or skipped (~46 a step)
MIN_STEPS = 50
#: The mean per-token loss of the last steps must fall below this (it starts near ln 512 = 6.2).
LOSS_BOUND = 0.5


def _bad_samples(template: dict[str, bytes]) -> list[tuple[str, list[tuple[str, bytes]]]]:
    doc = json.loads(template["json"])
    image_part = next(p for p in template if p != "json")
    too_long = dict(doc, conversations=[doc["conversations"][0],
                                        {"from": "gpt", "value": " ".join(["lesion"] * 3000)}])
    return [
        ("corrupt", [("json", template["json"]), (image_part, b"\x89PNG but not really")]),
        ("missing", [("json", template["json"])]),  # the JSON lists a medium the tar lacks
        ("toolong", [("json", json.dumps(too_long).encode()), (image_part, template[image_part])]),
    ]


def _single_turns(source: Path):
    """The demo shard's conversations one turn at a time (a handful of short samples to overfit)."""
    for _, parts in iter_samples(source):
        for doc in turn_docs(json.loads(parts["json"])):
            yield doc["turns"][0]["key"], {"json": canonical_json(doc), **{p: v for p, v in parts.items() if p != "json"}}


@pytest.fixture(scope="module")
def trained(ultrasound_build, tmp_path_factory, torchrun):
    root = tmp_path_factory.mktemp("overfit")
    shard = root / "data"
    source = sorted((ultrasound_build.out / "train").glob("*.tar"))[0]
    good = [(key, list(parts.items())) for _, (key, parts) in zip(range(GOOD), _single_turns(source))]
    bad = _bad_samples(dict(good[0][1]))
    samples = [good[0], bad[0], good[1], good[2], bad[1], good[3], good[4], bad[2], good[5]]
    with AtomicTarWriter(shard / "train" / "shard-000000.tar") as writer:
        for key, parts in samples:
            writer.add_sample(key, parts)
    write_dataset_yaml(shard, "overfit")
    prepare(shard, ["train/shard-000000.tar"])
    result = torchrun(str(WORKER), 1, [
        "--config", str(CONFIG), f"data.path={shard}", f"checkpoint.dir={root / 'run'}",
        f"train.conversations={CONVERSATIONS}", "optimizer.lr=5.0e-3", "optimizer.min_lr=1.0e-3",
        "schedule.warmup_ratio=0.04", "data.shuffle_buffer_size=null",
        "data.max_samples_per_sequence=null"], timeout=240)
    return result, root / "run"


def test_tiny_vlm_overfits_a_handful_of_samples(trained):
    trained, _ = trained
    losses = [s["loss"] for s in trained["steps"]]
    assert trained["reason"] == "finished" and len(losses) >= MIN_STEPS
    assert trained["steps"][-1]["consumed"] >= CONVERSATIONS
    assert losses[0] > 5.0  # a fresh model: near uniform over the 512-token vocabulary
    assert max(losses[-5:]) < LOSS_BOUND, losses


def test_bad_samples_are_skipped_and_counted(trained):
    trained, _ = trained
    skipped = trained["steps"][-1]["skipped"]
    # Every pass over the shard meets each bad sample once; 2,600 conversations are many passes.
    assert skipped.get("corrupt_image", 0) >= 2
    assert skipped.get("missing_part", 0) >= 2
    assert skipped.get("too_long", 0) >= 2
    assert set(skipped) <= {"corrupt_image", "missing_part", "too_long"}
    counts = [sum(s["skipped"].values()) for s in trained["steps"]]
    assert counts == sorted(counts)  # cumulative, never reset


def test_metrics_reach_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps, run = trained
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s",
            "train/samples_per_s", "checkpoint/save_time_s", "data/skipped_corrupt_image"} <= tags
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [step for step, _ in logged] == list(range(1, len(steps["steps"]) + 1))
    assert [v for _, v in logged] == pytest.approx([s["loss"] for s in steps["steps"]])
