"""`fleming grpo`: build, initialise, resume and fit stage 4 with the shared trainer.

Order at start, on every rank: parallel state, seeds and the SIGTERM handler (`train.trainer.
launch`); the tokenizer; the prompt loader; the reward scorer on each replica's first rank; the
model, optimizer and scheduler; ``checkpoint.init_from`` (also when resuming: the reference must
be the initial policy); the reference snapshot; then `train.trainer.fit_stage` resumes the latest
checkpoint of ``checkpoint.dir``, if any (weights, optimizer, scheduler, RNG streams, the
loader's position, counters), and runs the loop. The judge's cache lives in the run folder, so a
resumed run re-reads the verdicts it already paid for.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from megatron.core import parallel_state

from megatron_fleming.eval.judge import Judge, JudgeConfig
from megatron_fleming.grpo.config import GRPOConfig
from megatron_fleming.grpo.prompts import GRPOTaskEncoder, build_prompt_loader, prompt_encoder_config
from megatron_fleming.grpo.rewards import RewardScorer
from megatron_fleming.grpo.train_module import GRPOTrainModule
from megatron_fleming.train.callbacks import Callback
from megatron_fleming.train.checkpoint import Checkpointer
from megatron_fleming.train.handoff import check_tokenizer
from megatron_fleming.train.loader import build_tokenizer
from megatron_fleming.train.preemption import PreemptionSignal
from megatron_fleming.train.trainer import fit_stage, launch

log = logging.getLogger("megatron_fleming.grpo")


def build_scorer(cfg: GRPOConfig) -> RewardScorer:
    r, j = cfg.rewards, cfg.rewards.judge
    judge = None
    if j.base_url is not None:
        cache = Path(j.cache_dir) if j.cache_dir else Path(cfg.checkpoint.dir) / "judge-cache"
        judge = Judge(JudgeConfig(base_url=j.base_url, model=j.model, cache_dir=cache,
                                  api_key_env=j.api_key_env, concurrency=j.concurrency,
                                  max_requests=j.max_requests, timeout_s=j.timeout_s,
                                  max_attempts=j.max_attempts))
    return RewardScorer(format_weight=r.format_weight, accuracy_weight=r.accuracy_weight,
                        format_pattern=r.format_pattern, judge=judge)


def run(cfg: GRPOConfig, *, stop_marker: str | Path | None = None,
        callbacks: tuple[Callback, ...] = ()) -> str:
    """Run stage 4 as configured; returns why it stopped (finished, signal, exit_interval)."""
    vlm = cfg.vlm_config()
    return launch(cfg.parallel, cfg.train.seed,
                  lambda preemption: _run(cfg, vlm, preemption, stop_marker, callbacks))


def _run(cfg: GRPOConfig, vlm, preemption: PreemptionSignal, stop_marker,
         callbacks: tuple[Callback, ...]) -> str:
    rank0 = torch.distributed.get_rank() == 0
    if rank0:
        cfg.save(Path(cfg.checkpoint.dir) / "config.yaml")
    tokenizer = build_tokenizer(cfg, vlm)
    encoder = GRPOTaskEncoder(tokenizer, prompt_encoder_config(
        vlm, max_tiles=cfg.data.max_tiles, system_prompt=cfg.data.system_prompt,
        max_prompt_len=cfg.data.max_prompt_len))
    dp = parallel_state.get_data_parallel_world_size()
    loader = build_prompt_loader(cfg.data, encoder, prompts_per_rank=cfg.prompts_per_rank(dp),
                                 seed=cfg.train.seed, dp_rank=parallel_state.get_data_parallel_rank(),
                                 dp_size=dp)
    first_of_replica = parallel_state.get_model_parallel_group().rank() == 0
    module = GRPOTrainModule(cfg, vlm, tokenizer, build_scorer(cfg) if first_of_replica else None,
                             cfg.stage_length())
    checkpointer = Checkpointer(cfg.checkpoint)
    if cfg.checkpoint.init_from:
        check_tokenizer(tokenizer, cfg.checkpoint.init_from)
        folder = checkpointer.init_model(module, cfg.checkpoint.init_from)
        if rank0:
            log.info("initial weights (and KL reference) from %s", folder)
    module.snapshot_reference()
    return fit_stage(cfg, module, loader, checkpointer, preemption, stop_marker=stop_marker,
                     callbacks=callbacks)
