"""Real megatron-core parallelism on CPU ranks (gloo, CPU shim): every layout is the same model.

A TP=1 run saves a megatron dist-checkpoint of its initial weights and trains 3 steps; the other
layouts load that checkpoint (resharding it) and train the same 3 steps on the same global batch.
The first loss (before any update) checks the checkpoint round trip; the later ones and the
gradient norms check forward, backward, gradient reduction and the optimizer of each layout.
TP2 x PP2 runs with sequence parallelism: the sequence is split over the TP ranks between the
tensor-parallel regions, and the norms' partial gradients are summed over TP.
V2PE is on (delta = 0.5) throughout, so fractional positions cross pipeline stages too.
"""

from __future__ import annotations

import pytest

from megatron_fleming.model.config import ParallelConfig
from megatron_fleming.model.presets import load_preset
from megatron_fleming.train.plan import parameters_per_gpu

# fp32 with different reduction orders: ~1e-7 measured; a wrong gradient moves these by >1e-3.
LOSS_TOL = 2e-5
GRAD_NORM_RTOL = 1e-4


def assert_same_training(got: dict, want: dict) -> None:
    assert got["eval_loss"] == pytest.approx(want["eval_loss"], abs=LOSS_TOL)
    assert got["losses"] == pytest.approx(want["losses"], abs=LOSS_TOL)
    assert got["grad_norms"] == pytest.approx(want["grad_norms"], rel=GRAD_NORM_RTOL)


@pytest.fixture(scope="module")
def reference(torchrun, tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("tiny") / "tp1"
    result = torchrun("train_worker.py", 1, ["--preset", "tiny", "--save", str(checkpoint)])
    assert result["losses"][-1] < result["losses"][0] - 0.1, "the reference run must learn"
    return checkpoint, result


@pytest.mark.parametrize("nproc, layout", [
    (2, ["--tp", "2"]),
    (2, ["--distributed-optimizer"]),  # DP=2
    (2, ["--pp", "2"]),
    (4, ["--tp", "2", "--pp", "2", "--sp"]),
], ids=["tp2", "dp2-distopt", "pp2", "tp2xpp2-sp"])
def test_layout_trains_like_tp1(torchrun, reference, nproc, layout):
    checkpoint, want = reference
    got = torchrun("train_worker.py", nproc, ["--preset", "tiny", "--load", str(checkpoint), *layout])
    assert_same_training(got, want)


@pytest.fixture(scope="module")
def reference_6b(torchrun, tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("tiny-6b") / "tp1"
    return checkpoint, torchrun("train_worker.py", 1, ["--preset", "tiny-6b", "--save",
                                                      str(checkpoint)])


def test_internvit6b_style_tp2xpp2_uneven(torchrun, reference_6b):
    """Padded zero heads, QK-norm across TP ranks, tied embeddings across PP, padded vocabulary,
    and the 38B configs' uneven pipeline split: 1 of the 3 language layers on stage 0 (with the
    ViT), 2 on stage 1."""
    checkpoint, want = reference_6b
    got = torchrun("train_worker.py", 4, ["--preset", "tiny-6b", "--load", str(checkpoint),
                                          "--tp", "2", "--pp", "2", "--first-stage-layers", "1"],
                   timeout=240)
    assert_same_training(got, want)
    assert want["padded_heads_zero"] == [True]
    # Ranks 0 and 1 hold stage 0 (the ViT) in TP halves; rank 1 holds the padding head.
    assert got["padded_heads_zero"][:2] == [True, True]
    assert got["language_layers"] == [1, 1, 2, 2] and want["language_layers"] == [3]
    # `fleming plan` counts what each GPU of each stage holds, exactly.
    cfg = load_preset("tiny-6b")
    split = ParallelConfig(tensor_parallel=2, pipeline_parallel=2, first_stage_layers=1)
    stage0, stage1 = parameters_per_gpu(cfg, split)
    assert got["parameters"] == [stage0, stage0, stage1, stage1]
    assert want["parameters"] == parameters_per_gpu(cfg, ParallelConfig())
