"""Training configs: the stage YAMLs carry the paper's Table 2, and bad configs fail with the fix.

No processes are launched here: configs load and validate on their own, and the learning-rate
schedule is megatron's `OptimizerParamScheduler` driving a plain torch AdamW's param groups.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from megatron_fleming.model.freeze import STAGE_TRAINABLE
from megatron_fleming.train.config import load_config
from megatron_fleming.train.fp8 import fp8_transformer_kwargs
from megatron_fleming.train.optim import build_scheduler, warmup_iters

CONFIGS = Path(__file__).resolve().parents[2] / "megatron_fleming" / "configs"
# Paper Table 2: stage -> (lr, trainable components); wd 0.05, warmup 3%, cosine, batch 128, bf16.
TABLE2 = {1: (1e-5, {"vision", "projector", "language"}),
          2: (1e-5, {"vision", "projector"}),
          3: (2e-5, {"vision", "projector", "language"})}
GPUS = {"8b": 8, "38b": 32}


def _load(name: str, *overrides: str):
    return load_config(CONFIGS / name, ["train.iters=1000", *overrides])


@pytest.mark.parametrize("size", ["8b", "38b"])
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_stage_configs_carry_table2_values(size, stage):
    name = f"{size}_stage{stage}.yaml"
    raw = yaml.safe_load((CONFIGS / name).read_text())
    lr, trainable = TABLE2[stage]
    assert raw["optimizer"]["lr"] == lr and raw["train"]["stage"] == stage
    cfg = _load(name)
    assert cfg.model.preset == f"fleming-vl-{size}"
    assert cfg.optimizer.lr == lr and cfg.optimizer.weight_decay == 0.05
    assert (cfg.optimizer.adam_beta1, cfg.optimizer.adam_beta2, cfg.optimizer.adam_eps) == (0.9, 0.999, 1e-8)
    assert cfg.optimizer.clip_grad == 1.0 and cfg.optimizer.distributed
    assert cfg.schedule.style == "cosine" and cfg.schedule.warmup_ratio == 0.03
    assert cfg.train.global_batch_size == 128
    assert cfg.parallel.dtype == "bf16" and cfg.parallel.device == "cuda"
    assert cfg.data.dynamic_resolution and cfg.data.encoder_config().tiling.max_tiles == 12
    assert set(STAGE_TRAINABLE[cfg.train.stage]) == trainable
    model_parallel = cfg.parallel.tensor_parallel * cfg.parallel.pipeline_parallel
    data_parallel = GPUS[size] // model_parallel
    assert GPUS[size] % model_parallel == 0
    assert cfg.train.global_batch_size % (cfg.train.micro_batch_size * data_parallel) == 0
    te = cfg.data.encoder_config(cfg.vlm_config())
    assert te.tokens_per_tile == 256 and te.tiling.image_size == 448
    # V2PE as InternVL3 trains it: a step per sample from {1, 1/2, ..., 1/256}; a fixed step
    # below 1 for evaluation and inference.
    assert te.v2pe_train_deltas == tuple(2.0 ** -k for k in range(9))
    assert 0 < cfg.vlm_config().v2pe_delta < 1


def test_stage1_needs_its_length_and_says_how():
    with pytest.raises(ValueError, match="train.iters"):
        load_config(CONFIGS / "8b_stage1.yaml")


def test_fp8_on_a_cpu_config_names_transformer_engine():
    with pytest.raises(ValueError, match="Transformer Engine"):
        load_config(CONFIGS / "tiny_cpu.yaml", ["fp8.enabled=true"])


def test_fp8_on_a_gpu_config_selects_megatron_fp8_fields():
    cfg = _load("8b_stage3.yaml", "fp8.enabled=true", "fp8.recipe=tensorwise")
    kwargs = fp8_transformer_kwargs(cfg.fp8)
    assert kwargs["fp8"] == "hybrid" and kwargs["fp8_recipe"] == "tensorwise"
    assert fp8_transformer_kwargs(_load("8b_stage3.yaml").fp8) == {}
    with pytest.raises(ValueError, match="multiples of 16"):
        _load("8b_stage3.yaml", "fp8.enabled=true", "data.task_encoder.pad_to_multiple_of=8")


@pytest.mark.parametrize("override, message", [
    ("optimizer.betas=[0.9, 0.95]", "unknown keys \\['betas'\\] in optimizer"),
    ("data.task_encoder.tokens_per_tile=64", "come from the model config"),
    ("data.dynamic_resolution=false", "max_tiles"),
    ("train.global_batch_size=130", "multiple of train.micro_batch_size"),
    ("model.overrides.language.num_query_groups=3", "num_query_groups"),
    ("parallel.sequence_parallel=true", "sequence_parallel needs tensor_parallel > 1"),
    ("parallel.context_parallel=2", "parallel.context_parallel is 2: context parallelism is not"),
])
def test_bad_configs_fail_naming_the_fix(override, message):
    extra = ["train.micro_batch_size=4"] if "global_batch" in override else []
    with pytest.raises(ValueError, match=message):
        load_config(CONFIGS / "tiny_cpu.yaml", [override, *extra])


def test_resolved_config_round_trips(tmp_path):
    cfg = _load("38b_stage2.yaml", "optimizer.lr=3.0e-6")
    again = load_config(cfg.save(tmp_path / "config.yaml"))
    assert again == cfg and again.optimizer.lr == 3e-6 and again.train.iters == 1000


def test_cosine_schedule_with_warmup_ratio():
    cfg = _load("8b_stage3.yaml", "train.iters=200")
    assert warmup_iters(cfg) == 6  # ceil(3% of 200)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optimizer.lr)
    scheduler = build_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(cfg.train.iters):  # the trainer steps the schedule before each update
        scheduler.step(1)
        lrs.append(optimizer.param_groups[0]["lr"])
    peak, warm = cfg.optimizer.lr, warmup_iters(cfg)
    assert lrs[0] == pytest.approx(peak / warm) and lrs[warm - 1] == pytest.approx(peak)
    assert all(a < b for a, b in zip(lrs[:warm - 1], lrs[1:warm]))
    assert all(a > b for a, b in zip(lrs[warm - 1:-1], lrs[warm:]))
    middle = warm + (cfg.train.iters - warm) // 2
    assert lrs[middle - 1] == pytest.approx(peak / 2)
    assert lrs[-1] == pytest.approx(cfg.optimizer.min_lr)
    assert optimizer.param_groups[0]["weight_decay"] == 0.05
