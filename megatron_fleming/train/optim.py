"""AdamW, gradient clipping and the learning-rate schedule, all megatron-core's own.

`build_optimizer` hands megatron's `get_megatron_optimizer` our section: AdamW with decoupled
weight decay (none on biases and norm weights, megatron's default grouping), global grad-norm
clipping, and optionally the distributed optimizer (optimizer state sharded over data parallel).
Frozen parameters never reach it: megatron DDP and the optimizer take only what requires grad.

`build_scheduler` is megatron's `OptimizerParamScheduler` counted in conversations (Megatron-LM's
sample-based schedule; see `schedule`). It is advanced *before* each optimizer step by the
conversations that step consumes, so a step uses the lr of the count it reaches: linear warmup
from 0 reaches the peak at `warmup_ratio` of the stage, then cosine (or linear) decay reaches
`min_lr` at the stage's last conversation. Megatron-LM advances after the step, which spends the
first step at lr 0. GRPO (stage 4) uses the same scheduler counted in prompts, each of an
iteration's updates advancing it by its share of the iteration's prompts.

`prepare_optimizer_for_load` and `restore_adam_steps` bracket a checkpoint load where megatron's
distributed optimizer wraps a plain PyTorch AdamW (no Transformer Engine or Apex: CPU runs), whose
per-parameter ``step`` megatron's loader does not handle.
"""

from __future__ import annotations

import torch
from megatron.core.optimizer import (
    DistributedOptimizer,
    MegatronOptimizer,
    OptimizerConfig,
    get_megatron_optimizer,
)
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from megatron_fleming.train.config import TrainConfig
from megatron_fleming.train.schedule import StageLength


def optimizer_config(cfg: TrainConfig) -> OptimizerConfig:
    opt, par = cfg.optimizer, cfg.parallel
    bf16 = par.dtype == "bf16"
    return OptimizerConfig(
        optimizer="adam",
        decoupled_weight_decay=True,  # AdamW
        lr=opt.lr,
        min_lr=opt.min_lr,
        weight_decay=opt.weight_decay,
        adam_beta1=opt.adam_beta1,
        adam_beta2=opt.adam_beta2,
        adam_eps=opt.adam_eps,
        clip_grad=opt.clip_grad,
        bf16=bf16,
        params_dtype=torch.bfloat16 if bf16 else torch.float32,
        use_distributed_optimizer=opt.distributed,
        overlap_param_gather=opt.overlap_param_gather,
        fp8_recipe=cfg.fp8.recipe if cfg.fp8.enabled else None,
    )


def build_optimizer(cfg: TrainConfig, model: list[torch.nn.Module]) -> MegatronOptimizer:
    """megatron's (distributed) AdamW over the trainable parameters of this rank's DDP chunks."""
    return get_megatron_optimizer(optimizer_config(cfg), model)


def build_scheduler(cfg, optimizer: MegatronOptimizer,
                    length: StageLength) -> OptimizerParamScheduler:
    """Warmup and decay over the stage's samples (`length.total`); `cfg` is any stage's config
    (its ``optimizer`` and ``schedule`` sections)."""
    warmup = length.warmup(cfg.schedule.warmup_ratio)
    if warmup >= length.total:
        raise ValueError(f"schedule.warmup_ratio {cfg.schedule.warmup_ratio} gives {warmup} warmup "
                         f"{length.unit} of {length.total}; lower it or train longer")
    opt = cfg.optimizer
    return OptimizerParamScheduler(
        optimizer,
        init_lr=0.0,
        max_lr=opt.lr,
        min_lr=opt.min_lr,
        lr_warmup_steps=warmup,
        lr_decay_steps=length.total,
        lr_decay_style=cfg.schedule.style,
        start_wd=opt.weight_decay,
        end_wd=opt.weight_decay,
        wd_incr_steps=length.total,
        wd_incr_style="constant",
        # A resumed run continues the saved schedule; a changed config must not bend it silently.
        use_checkpoint_opt_param_scheduler=False,
        override_opt_param_scheduler=False,
    )


def _torch_adams(optimizer) -> list[torch.optim.Optimizer]:
    """The plain-PyTorch Adam(W)s inside megatron distributed optimizers (no TE / Apex: CPU)."""
    found = []
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(opt, "optimizer", None)
        torch_adam = isinstance(inner, torch.optim.Adam | torch.optim.AdamW)
        if isinstance(opt, DistributedOptimizer) and torch_adam:
            found.append(inner)
    return found


def prepare_optimizer_for_load(optimizer) -> None:
    """Give a fresh plain-PyTorch AdamW its per-parameter state before a load.

    Without Transformer Engine or Apex (CPU runs) megatron's distributed optimizer wraps
    `torch.optim.AdamW`, and building its state dict for loading reads each parameter's ``step``,
    which exists only after a first step. One step at lr 0 with zero gradients creates the state
    and leaves the weights bit-identical (AdamW multiplies them by 1 - 0 * wd and adds 0); the load
    then overwrites all of it. TE's and Apex's fused Adam need no such step.
    """
    for inner in _torch_adams(optimizer):
        if inner.state:
            continue
        lrs = [group["lr"] for group in inner.param_groups]
        for group in inner.param_groups:
            group["lr"] = 0.0
            for param in group["params"]:
                param.grad = torch.zeros_like(param)
        inner.step()
        inner.zero_grad(set_to_none=True)
        for group, lr in zip(inner.param_groups, lrs):
            group["lr"] = lr


def restore_adam_steps(optimizer) -> None:
    """After a load, set every parameter's AdamW ``step`` from its group's saved step count.

    megatron's distributed optimizer saves a plain PyTorch AdamW's step count once per parameter
    group and, on load, hands one shared tensor to every parameter (AdamW then increments it once
    per parameter) or overwrites it from the loading template. A private tensor per parameter,
    holding the saved count, keeps the bias correction of a resumed run identical.
    """
    for inner in _torch_adams(optimizer):
        for group in inner.param_groups:
            if "step" not in group:
                continue
            for param in group["params"]:
                inner.state[param]["step"] = torch.tensor(float(group["step"]), dtype=torch.float32)
