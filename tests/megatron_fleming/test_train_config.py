"""Training configs: the stage YAMLs carry the paper's Table 2, and bad configs fail with the fix.

No processes are launched here: configs load and validate on their own, and the learning-rate
schedule is megatron's `OptimizerParamScheduler` driving a plain torch AdamW's param groups.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from megatron_fleming.model.freeze import STAGE_TRAINABLE
from megatron_fleming.train.config import load_config
from megatron_fleming.train.fp8 import fp8_transformer_kwargs
from megatron_fleming.train.optim import build_scheduler
from megatron_fleming.train.schedule import StageLength

CONFIGS = Path(__file__).resolve().parents[2] / "megatron_fleming" / "configs"
# Paper Table 2: stage -> (lr, trainable components); wd 0.05, warmup 3%, cosine, batch 128, bf16.
TABLE2 = {1: (1e-5, {"vision", "projector", "language"}),
          2: (1e-5, {"vision", "projector"}),
          3: (2e-5, {"vision", "projector", "language"})}
GPUS = {"8b": 8, "38b": 32}


def _load(name: str, *overrides: str):
    return load_config(CONFIGS / name, list(overrides))


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
    assert cfg.train.epochs == 1 and cfg.train.conversations is None  # counted in conversations
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


@pytest.mark.parametrize("overrides", [["train.conversations=null"],
                                       ["train.epochs=1"]], ids=["neither", "both"])
def test_a_stage_has_exactly_one_length_and_says_how(overrides):
    with pytest.raises(ValueError, match="set exactly one.*e.g. train.epochs=1"):
        load_config(CONFIGS / "tiny_cpu.yaml", overrides)


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
    assert again == cfg and again.optimizer.lr == 3e-6 and again.train.epochs == 1


def test_cosine_schedule_follows_consumed_conversations():
    """Megatron's scheduler counted in conversations: steps consume uneven numbers of them (packs
    hold different numbers of conversations), and the lr follows the count, not the steps."""
    cfg = _load("8b_stage3.yaml")
    length = StageLength(total=2000, per_epoch=2000)
    warm = length.warmup(cfg.schedule.warmup_ratio)
    assert warm == 60  # ceil(3% of 2000)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optimizer.lr)
    scheduler = build_scheduler(cfg, optimizer, length)
    peak, low = cfg.optimizer.lr, cfg.optimizer.min_lr
    consumed, seen = 0, []
    for step in range(1000):
        increment = (7, 13, 3, 11)[step % 4]  # conversations of this step's global batch
        scheduler.step(increment)  # the trainer advances before each update
        consumed += increment
        seen.append((consumed, optimizer.param_groups[0]["lr"]))
        if consumed >= length.total:
            break
    assert consumed - increment < length.total <= consumed  # stops at the step reaching it
    for count, lr in seen:
        if count <= warm:
            assert lr == pytest.approx(peak * count / warm)
        elif count <= length.total:
            progress = (count - warm) / (length.total - warm)
            assert lr == pytest.approx(low + (peak - low) * 0.5 * (1 + math.cos(math.pi * progress)))
    assert seen[-1][1] == pytest.approx(low)
    assert optimizer.param_groups[0]["weight_decay"] == 0.05
