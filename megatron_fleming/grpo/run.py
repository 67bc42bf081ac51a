"""`fleming grpo`: build, resume or initialise, run GRPO iterations; the entry point `run(cfg)`.

Order at start, on every rank: parallel state; tokenizer; the prompt loader; the reward scorer on
each replica's first rank; the model, optimizer and scheduler; ``checkpoint.init_from`` (also
when resuming: the reference must be the initial policy); the reference snapshot; then the latest
checkpoint of ``checkpoint.dir``, if any (weights, optimizer, scheduler, RNG streams, the
loader's position, counters). The judge's cache lives in the run folder, so a resumed run
re-reads the verdicts it already paid for.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from megatron.core import parallel_state

from megatron_fleming.eval.judge import Judge, JudgeConfig
from megatron_fleming.grpo.config import GRPOConfig
from megatron_fleming.grpo.prompts import GRPOTaskEncoder, build_prompt_loader, prompt_encoder_config
from megatron_fleming.grpo.rewards import RewardScorer
from megatron_fleming.grpo.train_module import GRPOTrainModule
from megatron_fleming.model.parallel import initialize_parallel, shutdown_parallel
from megatron_fleming.train.checkpoint import Checkpointer
from megatron_fleming.train.loader import build_tokenizer
from megatron_fleming.train.optim import _torch_adams, prepare_optimizer_for_load
from megatron_fleming.train.preemption import PreemptionSignal
from megatron_fleming.train.trainer import Progress

log = logging.getLogger("megatron_fleming.grpo")
METRICS_FILE = "grpo_metrics.jsonl"


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


def materialize_optimizer_state(optimizer) -> None:
    """Give an optimizer that has not stepped yet its state as before a first step.

    A GRPO run whose groups were all skipped so far has taken no update, and megatron's
    distributed optimizer cannot save a plain PyTorch AdamW without per-parameter state. The
    zero-lr step of `prepare_optimizer_for_load` creates it (zero moments, weights untouched);
    its step count goes back to 0, so the first real update after a resume is step 1 as it would
    have been without the checkpoint.
    """
    fresh = [inner for inner in _torch_adams(optimizer) if not inner.state]
    prepare_optimizer_for_load(optimizer)
    for inner in fresh:
        for state in inner.state.values():
            state["step"] = torch.zeros_like(state["step"])


def run(cfg: GRPOConfig, *, stop_marker: str | Path | None = None) -> str:
    vlm = cfg.vlm_config()
    initialize_parallel(cfg.parallel, seed=cfg.train.seed)
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    device = torch.device("cuda", torch.cuda.current_device()) if cfg.parallel.device == "cuda" \
        else torch.device("cpu")
    with PreemptionSignal(device) as preemption:
        try:
            return _run(cfg, vlm, preemption, stop_marker)
        finally:
            shutdown_parallel()


def _run(cfg, vlm, preemption, stop_marker) -> str:
    rank0 = torch.distributed.get_rank() == 0
    root = Path(cfg.checkpoint.dir)
    if rank0:
        cfg.save(root / "config.yaml")
    tokenizer = build_tokenizer(cfg, vlm)
    encoder = GRPOTaskEncoder(tokenizer, prompt_encoder_config(
        vlm, max_tiles=cfg.data.max_tiles, system_prompt=cfg.data.system_prompt,
        max_prompt_len=cfg.data.max_prompt_len))
    dp = parallel_state.get_data_parallel_world_size()
    loader = build_prompt_loader(cfg.data, encoder, prompts_per_rank=cfg.prompts_per_rank(dp),
                                 seed=cfg.train.seed, dp_rank=parallel_state.get_data_parallel_rank(),
                                 dp_size=dp)
    first_of_replica = parallel_state.get_model_parallel_group().rank() == 0
    module = GRPOTrainModule(cfg, vlm, tokenizer, build_scorer(cfg) if first_of_replica else None)
    checkpointer = Checkpointer(cfg.checkpoint)
    if cfg.checkpoint.init_from:
        folder = checkpointer.init_model(module, cfg.checkpoint.init_from)
        if rank0:
            log.info("initial weights (and KL reference) from %s", folder)
    module.snapshot_reference()
    resumed = checkpointer.resume(module, loader)
    progress = Progress.from_dict(resumed) if resumed else Progress()
    total, interval = cfg.train.iters, cfg.checkpoint.interval
    reason = "finished"
    data = iter(loader)
    if rank0:
        log.info("GRPO from iteration %d to %d", progress.iteration, total)
    while progress.iteration < total:
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            batch = next(data)
        waited = time.perf_counter() - start
        result = module.train_step(batch, progress.iteration + 1)
        progress.iteration += 1
        progress.samples += int(result.metrics["groups"])
        progress.tokens += int(result.metrics["train_tokens"])
        progress.skipped.update(result.counts)
        if rank0:
            _log(cfg, progress, result.metrics, waited, root)
        last = progress.iteration == total
        signalled = preemption.requested()
        exit_interval = cfg.train.exit_interval
        timed_exit = bool(exit_interval) and progress.iteration % exit_interval == 0
        stop = not last and (signalled or timed_exit)
        periodic = bool(interval) and progress.iteration % interval == 0
        if stop or (last and cfg.checkpoint.save_at_end) or periodic:
            materialize_optimizer_state(module.optimizer)
            checkpointer.save(progress.iteration, module, loader, progress.to_dict(), cfg.to_dict())
        if stop:
            reason = "signal" if signalled else "exit_interval"
            break
    if reason != "finished" and stop_marker is not None and rank0:
        Path(stop_marker).parent.mkdir(parents=True, exist_ok=True)
        Path(stop_marker).write_text(f"{progress.iteration}\n")
    return reason


def _log(cfg, progress, m, waited, root) -> None:
    row = {"iteration": progress.iteration, "data_wait": waited, **m,
           "counts": dict(progress.skipped)}
    with (root / METRICS_FILE).open("a") as f:
        f.write(json.dumps(row) + "\n")
    if progress.iteration % cfg.train.log_interval and progress.iteration != cfg.train.iters:
        return
    log.info("iter %d/%d | reward %.3f (format %.3f, accuracy %.3f) | kl %.4f | clip %.3f | "
             "entropy %.3f | len %.1f | skipped groups %d | rollout %.0f tok/s, train %.0f tok/s "
             "| time rollout/ref/update %.0f/%.0f/%.0f%% | logprob |d| mean %.2e max %.2e ratio %.5f",
             progress.iteration, cfg.train.iters, m["reward"], m["reward_format"],
             m["accuracy"], m["kl"], m["clip_fraction"], m["entropy"],
             m["response_length"], m["skipped_groups"], m["rollout_tokens_per_s"],
             m["train_tokens_per_s"], 100 * m["time_share_rollout"],
             100 * (m["time_share_reference"] + m["time_share_check"]),
             100 * m["time_share_update"], m["logprob_mean_abs_delta"],
             m["logprob_max_abs_delta"], m["logprob_error_ratio"])
