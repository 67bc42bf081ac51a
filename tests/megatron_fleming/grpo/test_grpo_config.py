"""GRPO configs: the stage-4 YAMLs carry the paper's values as plain numbers, the named defaults
hold, and settings the code cannot honour are refused with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from megatron_fleming.grpo.config import load_grpo_config

CONFIGS = Path(__file__).resolve().parents[3] / "megatron_fleming" / "configs"
GPUS = {"8b": 8, "38b": 32}


@pytest.mark.parametrize("size", ["8b", "38b"])
def test_grpo_stage4_configs_carry_the_paper_values(size):
    raw = yaml.safe_load((CONFIGS / f"{size}_stage4.yaml").read_text())
    # plain numbers in the file, as the paper states them
    assert raw["optimizer"]["lr"] == 1.0e-6 and raw["optimizer"]["weight_decay"] == 0.0
    assert raw["grpo"]["generations"] == 8 and raw["grpo"]["temperature"] == 0.9
    assert raw["grpo"]["kl_coef"] == 0.04 and raw["grpo"]["mini_batches"] == 4
    cfg = load_grpo_config(CONFIGS / f"{size}_stage4.yaml")
    assert cfg.model.preset == f"fleming-vl-{size}"
    assert cfg.schedule.style == "cosine" and cfg.schedule.warmup_ratio == 0.1
    assert cfg.optimizer.clip_grad == 1.0 and cfg.parallel.dtype == "bf16"
    assert cfg.data.max_tiles == 1  # no dynamic size in stage 4
    g = cfg.grpo
    assert (g.clip_eps, g.kl_estimator, g.std, g.std_eps, g.aggregation) == \
        (0.2, "k3", "population", 1e-4, "token-mean")
    assert cfg.rewards.format_weight == 1.0 and cfg.rewards.accuracy_weight == 1.0
    assert cfg.checkpoint.init_from == f"checkpoints/{size}/stage3"
    # one epoch of the GRPO set, counted in prompts as stages 1-3 count conversations (no
    # count of steps anywhere), and every data-parallel replica gets whole prompts
    assert raw["train"]["epochs"] == 1 and "iters" not in raw["train"]
    assert cfg.train.epochs == 1 and cfg.train.prompts is None
    dp = GPUS[size] // (cfg.parallel.tensor_parallel * cfg.parallel.pipeline_parallel)
    assert cfg.prompts_per_rank(dp) * dp == g.prompts_per_step


def test_grpo_named_defaults_without_the_file():
    cfg = load_grpo_config(CONFIGS / "tiny_grpo.yaml", ["grpo={prompts_per_step: 4}"])
    g = cfg.grpo
    assert (g.generations, g.temperature, g.kl_coef, g.mini_batches, g.clip_eps) == (8, 0.9, 0.04, 4, 0.2)
    assert (g.kl_estimator, g.std, g.aggregation, g.max_response_len) == \
        ("k3", "population", "token-mean", 1024)
    assert cfg.rewards.judge.model == "Qwen2.5-72B-Instruct" and cfg.rewards.judge.base_url is None


@pytest.mark.parametrize("override,message", [
    ("grpo.generations=1", "grpo.generations"),
    ("grpo.kl_estimator=k4", "grpo.kl_estimator"),
    ("grpo.aggregation=sum", "grpo.aggregation"),
    ("grpo.std=sample", "grpo.std"),
    ("grpo.temperature=0", "grpo.temperature"),
    ("grpo.max_response_len=4096", "max_tokens_per_microbatch"),
    ("rewards.format_pattern=(", "rewards.format_pattern"),
    ("rewards.judge.timeout_s=0", "rewards.judge.timeout_s"),
    ("parallel.virtual_pipeline_parallel=2", "virtual_pipeline_parallel"),
    ("train.prompts=null", "set exactly one.*e.g. train.epochs=1"),
    ("train.epochs=1", "set exactly one"),
    ("train.iters=10", "unknown keys \\['iters'\\] in train"),
    ("grpo.clip_epsilon=0.2", "unknown keys"),
])
def test_grpo_bad_settings_are_refused_by_name(override, message):
    with pytest.raises(ValueError, match=message):
        load_grpo_config(CONFIGS / "tiny_grpo.yaml", [override])


def test_grpo_prompts_must_split_over_data_parallel():
    cfg = load_grpo_config(CONFIGS / "tiny_grpo.yaml", ["grpo.prompts_per_step=6"])
    assert cfg.prompts_per_rank(2) == 3
    with pytest.raises(ValueError, match="data-parallel size"):
        cfg.prompts_per_rank(4)
