"""`fleming plan`: parameters, memory per GPU and compute per pipeline stage, before launch.

Parameter counts are checked against built models elsewhere (test_model_parallel: every rank of
a TP2 x PP2 uneven split holds what `parameters_per_gpu` says). Here: the stage configs' plans
(InternVL3-8B's and -38B's sizes, the 38B's uneven split balancing stage 0), and that the memory
terms move the way their causes say.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_fleming.cli import main
from megatron_fleming.train.config import load_config
from megatron_fleming.train.plan import plan

CONFIGS = Path(__file__).resolve().parents[2] / "megatron_fleming" / "configs"
CONFIG_8B = CONFIGS / "8b_stage3.yaml"


def test_8b_and_38b_sizes_and_splits():
    small, large = (plan(load_config(CONFIGS / f"{size}_stage3.yaml"), gpus=gpus)
                    for size, gpus in (("8b", 8), ("38b", 32)))
    # InternViT-300M + Qwen2.5-7B; InternViT-6B (25 heads allocated as 32) + Qwen2.5-32B.
    assert sum(small.params.values()) == pytest.approx(7.95e9, rel=0.01)
    assert large.params["vision"] == pytest.approx(6.05e9, rel=0.01)
    assert large.params["language"] == pytest.approx(32.77e9, rel=0.01)
    assert small.data_parallel == 4 and large.data_parallel == 2 and large.microbatches == 64
    assert [s.language_layers for s in large.stages] == [16, 48]
    compute = [s.tflops_per_microbatch for s in large.stages]
    assert min(compute) / max(compute) > 0.9  # the uneven split balances the ViT's stage
    assert small.fits() and large.fits()


def test_memory_terms_follow_their_causes():
    cfg = load_config(CONFIGS / "38b_stage3.yaml")
    base = plan(cfg, gpus=32).stages[0]
    more_dp = plan(cfg, gpus=64).stages[0]
    assert more_dp.optimizer_gib == pytest.approx(base.optimizer_gib / 2)  # ZeRO-1 over DP
    assert more_dp.weights_gib == base.weights_gib and more_dp.grads_gib == base.grads_gib
    no_recompute = plan(load_config(CONFIGS / "38b_stage3.yaml",
                                    ["parallel.recompute_activations=false"]), gpus=32).stages[0]
    assert no_recompute.activations_gib > 2 * base.activations_gib
    frozen = plan(load_config(CONFIGS / "38b_stage2.yaml"), gpus=32).stages[1]
    assert frozen.grads_gib == frozen.optimizer_gib == 0  # stage 2: the LLM stage trains nothing


def test_cli_prints_the_plan_and_fails_when_a_stage_does_not_fit(capsys):
    assert main(["plan", "--config", str(CONFIGS / "38b_stage1.yaml"), "--gpus", "32"]) == 0
    out = capsys.readouterr().out
    assert "TP x PP x DP 8 x 2 x 2" in out and "fits in 80 GiB" in out
    assert main(["plan", "--config", str(CONFIGS / "38b_stage1.yaml"), "--gpus", "32",
                 "--gpu-memory-gib", "40"]) == 2
    assert "DOES NOT FIT in 40 GiB" in capsys.readouterr().out


def test_model_flops_are_six_per_parameter_per_token_plus_attention():
    """MFU's numerator: 3 x forward = 6 FLOPs per weight per token (the classic 6N), plus causal
    attention within each conversation, so packing two conversations costs less than one of
    their joint length."""
    from megatron_fleming.train.plan import conversation_flops, language_layer_params, vocab_params

    vlm = load_config(CONFIG_8B).vlm_config()
    weights = (language_layer_params(vlm).split * vlm.language.num_layers
               + vocab_params(vlm).split)  # the matmul weights one token meets
    biases = (vlm.language.num_attention_heads + 2 * vlm.language.num_query_groups) \
        * vlm.language.head_dim * vlm.language.num_layers
    assert conversation_flops(vlm, [1], tiles=0) == pytest.approx(6 * (weights - biases), rel=1e-3)
    joint = conversation_flops(vlm, [4096], tiles=0)
    packed = conversation_flops(vlm, [2048, 2048], tiles=0)
    assert packed < joint and joint - packed == pytest.approx(
        3 * 2 * 2 * vlm.language.num_layers * vlm.language.num_attention_heads
        * vlm.language.head_dim * (4096 ** 2 - 2 * 2048 ** 2) / 2)
