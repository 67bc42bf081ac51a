"""`GRPOTrainModule`: one GRPO iteration — rollouts, rewards, advantages, reference, updates.

Per iteration, on every rank of each data-parallel replica (one model replica = its TP x PP
ranks, which see the same prompts):

1. rollouts: the engine samples ``grpo.generations`` responses per prompt on the training weights;
2. rewards on the replica's first rank (where the judge's requests go out), broadcast to its
   model-parallel peers; group-normalised advantages; zero-variance groups skipped and counted;
3. reference log-probs of the kept sequences with the initial weights swapped in
   (`reference.ReferenceWeights`; skipped when ``kl_coef`` is 0);
4. the consistency check: the same forward with the current weights vs the rollout's log-probs;
5. ``grpo.mini_batches`` optimizer updates, each over a contiguous share of the kept sequences,
   packed into micro-batches and run through megatron's schedule (any TP/PP, DDP + distributed
   optimizer); a mini-batch that is empty on every rank is skipped (its learning-rate step still
   taken, so the schedule stays tied to the prompts consumed).

The stage is counted in prompts, as stages 1-3 count conversations (`train.schedule`): the
prompts an iteration consumed over all data-parallel replicas (drawn + skipped) are split
evenly over its updates, each advancing megatron's learning-rate scheduler by its share before
it steps; the stage is finished once its prompts are consumed.

Metrics are reduced over all ranks (one rank per replica contributes each quantity) and come back
identical on every rank. The module is a `train.protocol.StageModule`: `train.trainer.Trainer`
runs the loop, checkpoints, logging and preemption for it as for stages 1-3.
"""

from __future__ import annotations

import math
import time
from collections import Counter

import torch
from megatron.core import parallel_state
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_fleming.data.tokenizer import ChatTokenizer
from megatron_fleming.generate.engine import GenerationEngine
from megatron_fleming.generate.loading import end_ids_of
from megatron_fleming.generate.logprobs import sequence_logprobs, token_mask
from megatron_fleming.generate.sampling import SamplingParams
from megatron_fleming.grpo.advantages import group_advantages
from megatron_fleming.grpo.batches import (
    MicroBatch,
    TrainingSequence,
    pack_microbatches,
    split_mini_batches,
)
from megatron_fleming.grpo.config import GRPOConfig
from megatron_fleming.grpo.consistency import Drift, check_drift, drift_sums
from megatron_fleming.grpo.objective import STATS, STATS_KEY, GRPOObjective, objective_forward_step
from megatron_fleming.grpo.prompts import PromptBatch, PromptSample
from megatron_fleming.grpo.reference import ReferenceWeights
from megatron_fleming.grpo.rewards import RewardScorer
from megatron_fleming.grpo.rollout import Rollout, generate_rollouts
from megatron_fleming.model.config import VLMConfig
from megatron_fleming.train.optim import _torch_adams, build_scheduler, prepare_optimizer_for_load
from megatron_fleming.train.protocol import StepReport
from megatron_fleming.train.schedule import StageLength, global_consumed
from megatron_fleming.train.train_module import StageModel

PHASES = ("rollout", "reward", "reference", "check", "update")


def update_shares(consumed: int, updates: int) -> list[int]:
    """`consumed` prompts split over `updates` optimizer updates in integer shares that sum to it
    (each update advances the schedule by its share)."""
    return [consumed * (k + 1) // updates - consumed * k // updates for k in range(updates)]


def _mp_broadcast(tensor: torch.Tensor) -> torch.Tensor:
    """From the replica's first rank to its TP x PP peers."""
    group = parallel_state.get_model_parallel_group()
    if torch.distributed.get_world_size(group) > 1:
        torch.distributed.broadcast(tensor, src=parallel_state.get_model_parallel_src_rank(),
                                    group=group)
    return tensor


class GRPOTrainModule(StageModel):
    batches_per_step = 1  # one rollout batch of prompts per iteration
    console_metrics = (
        ("reward", ".3f"), ("reward_format", ".3f"), ("accuracy", ".3f"), ("kl", ".4f"),
        ("clip_fraction", ".3f"), ("entropy", ".3f"), ("response_length", ".1f"),
        ("skipped_groups", ".0f"), ("rollout_tokens_per_s", ".0f"), ("train_tokens_per_s", ".0f"),
        ("time_share_rollout", ".0%"), ("time_share_reference", ".0%"), ("time_share_check", ".0%"),
        ("time_share_update", ".0%"), ("logprob_max_abs_delta", ".1e"),
        ("logprob_error_ratio", ".6f"), ("lr", ".3e"))

    def __init__(self, cfg: GRPOConfig, vlm: VLMConfig, tokenizer: ChatTokenizer,
                 scorer: RewardScorer | None, length: StageLength) -> None:
        super().__init__(cfg, vlm, 4, length)
        self.tokenizer = tokenizer
        self.scheduler = build_scheduler(cfg, self.optimizer, length)
        self.scorer = scorer  # None except on each replica's first rank
        g = cfg.grpo
        self.delta = vlm.v2pe_delta if g.v2pe_delta is None else g.v2pe_delta
        self.sampling = SamplingParams(temperature=g.temperature, top_p=g.top_p, top_k=g.top_k,
                                       max_new_tokens=g.max_response_len)
        self.engine = GenerationEngine(self.model[0], None, end_ids=end_ids_of(tokenizer, vlm),
                                       batch_size=g.generations * g.rollout_prompts,
                                       v2pe_delta=self.delta)
        self.objective = GRPOObjective(temperature=g.temperature, mask=token_mask(self.model[0]),
                                       clip_eps=g.clip_eps, kl_coef=g.kl_coef,
                                       kl_estimator=g.kl_estimator, aggregation=g.aggregation)
        self.reference: ReferenceWeights | None = None
        self.last = parallel_state.is_pipeline_last_stage(ignore_virtual=True)

    # ------------------------------------------------------------------ state (checkpoints)

    def snapshot_reference(self) -> None:
        """Keep the current weights as the KL reference (call once the initial weights are in)."""
        if self.cfg.grpo.kl_coef > 0:
            self.sync_params()
            self.reference = ReferenceWeights(self.model)

    def before_save(self) -> None:
        """An optimizer that has not stepped yet (every group skipped so far) gets its state as
        before a first step: megatron's distributed optimizer cannot save a plain PyTorch AdamW
        without per-parameter state. The zero-lr step of `prepare_optimizer_for_load` creates it
        (zero moments, weights untouched) and its step count goes back to 0, so the first real
        update after a resume is step 1, as without the checkpoint."""
        fresh = [inner for inner in _torch_adams(self.optimizer) if not inner.state]
        prepare_optimizer_for_load(self.optimizer)
        for inner in fresh:
            for state in inner.state.values():
                state["step"] = torch.zeros_like(state["step"])

    # ------------------------------------------------------------------ one iteration

    def _rewards(self, prompts: list[PromptSample], groups: list[list[Rollout]],
                 counts: Counter) -> torch.Tensor:
        """[P * N, 3] float64 (total, format, accuracy) on every rank of the replica."""
        n = sum(len(g) for g in groups)
        out = torch.zeros((n, 3), dtype=torch.float64, device=self.device)
        if self.scorer is not None:
            keys = [p.answer for p, g in zip(prompts, groups) for _ in g]
            scored = self.scorer.score(keys, [r.text for g in groups for r in g])
            out.copy_(torch.stack([scored.total, scored.format, scored.accuracy], dim=1))
            counts.update({f"reward_{k}": v for k, v in scored.counts.items()})
        return _mp_broadcast(out).cpu()

    def _pack(self, sequences: list[TrainingSequence]) -> list[MicroBatch]:
        return pack_microbatches(sequences, max_tokens=self.cfg.grpo.max_tokens_per_microbatch,
                                 pad_id=self.tokenizer.pad_id, image_id=self.vlm.image_context_token_id,
                                 delta=self.delta)

    def _logprobs(self, mb: MicroBatch) -> torch.Tensor | None:
        """The current (or swapped-in) weights' log-probs of the micro-batch's targets, [1, T] on
        the last pipeline stage."""
        b = mb.batch
        # Inside DDP: no parameter-gather hooks run while reference weights are swapped in.
        lp = sequence_logprobs(self.model[0].module, b.input_ids.to(self.device),
                               None if b.pixel_values is None else b.pixel_values.to(self.device),
                               b.labels.to(self.device), temperature=self.cfg.grpo.temperature,
                               position_ids=b.position_ids.to(self.device),
                               cu_seqlens=b.cu_seqlens.to(self.device))
        return None if lp is None else lp.float().cpu()

    def _reference_logprobs(self, sequences: list[TrainingSequence],
                            micro: list[MicroBatch]) -> None:
        with self.reference.swapped_in():
            for mb in micro:
                lp = self._logprobs(mb)
                if lp is None:
                    continue
                cu = mb.batch.cu_seqlens.tolist()
                for n, i in enumerate(mb.members):
                    start = cu[n] + len(sequences[i].rollout.prompt_ids) - 1
                    sequences[i].ref_logprobs = lp[0, start:cu[n + 1]].tolist()

    def _drift(self, micro: list[MicroBatch]) -> torch.Tensor:
        sums = torch.zeros(4, dtype=torch.float64)
        for mb in micro:
            lp = self._logprobs(mb)
            if lp is not None:
                part = drift_sums(lp, mb.old_logprobs, mb.mask)
                sums[:2] += part[:2]
                sums[2] = torch.maximum(sums[2], part[2])
                sums[3] += part[3]
        return sums

    def _update(self, sequences: list[TrainingSequence], present: int,
                advance: int) -> tuple[torch.Tensor, bool, float | None]:
        """One optimizer update over this rank's `sequences` (`present`: how many all ranks
        hold), at the learning rate of the prompt count advanced by `advance`; returns the summed
        statistics, whether the update was applied, the grad norm."""
        stats = torch.zeros(len(STATS), dtype=torch.float64)
        self.scheduler.step(advance)
        if present == 0:
            return stats, False, None
        micro = self._pack(sequences)
        for chunk in self.model:
            chunk.train()
            chunk.zero_grad_buffer()
        self.optimizer.zero_grad()
        for mb in micro:
            for name in ("input_ids", "labels", "position_ids", "cu_seqlens"):
                setattr(mb.batch, name, getattr(mb.batch, name).to(self.device))
            if mb.batch.pixel_values is not None:
                mb.batch.pixel_values = mb.batch.pixel_values.to(self.device)
            for name in ("old_logprobs", "ref_logprobs", "advantages", "mask", "sequence"):
                setattr(mb, name, getattr(mb, name).to(self.device))
        reports = get_forward_backward_func()(
            forward_step_func=objective_forward_step(self.objective), data_iterator=iter(micro),
            model=self.model, num_microbatches=len(micro),
            seq_length=max(mb.batch.input_ids.shape[1] for mb in micro), micro_batch_size=1,
            forward_only=False)
        applied, grad_norm, _ = self.optimizer.step()
        if self.last:
            for report in reports:
                stats += report[STATS_KEY].cpu()
        return stats, bool(applied), None if grad_norm is None else float(grad_norm)

    def step(self, batches: list[PromptBatch], iteration: int) -> StepReport:
        return self.train_step(batches[0], iteration)

    def train_step(self, batch: PromptBatch, iteration: int) -> StepReport:
        g, seconds, counts = self.cfg.grpo, dict.fromkeys(PHASES, 0.0), Counter()
        prompts = batch.prompts
        consumed = global_consumed([batch], self.device)  # drawn + skipped, all replicas
        clock = time.perf_counter()

        def lap(phase: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            seconds[phase] += now - clock
            clock = now

        self.sync_params()
        groups = generate_rollouts(self.engine, self.tokenizer, prompts, generations=g.generations,
                                   sampling=self.sampling, seed=self.cfg.train.seed,
                                   iteration=iteration)
        lap("rollout")
        rewards = self._rewards(prompts, groups, counts)
        adv = group_advantages(rewards[:, 0].view(len(prompts), g.generations), std=g.std,
                               eps=g.std_eps)
        sequences = [TrainingSequence(r, float(adv.advantages[p, j]))
                     for p, group in enumerate(groups) if not adv.skipped[p]
                     for j, r in enumerate(group)]
        lap("reward")
        check = g.logprob_check_interval and iteration % g.logprob_check_interval == 0
        micro = self._pack(sequences) if sequences and (self.reference or check) else []
        if self.reference is not None and micro:
            self._reference_logprobs(sequences, micro)
        lap("reference")
        drift = self._drift(micro) if check and micro else torch.zeros(4, dtype=torch.float64)
        lap("check")
        stats = torch.zeros(len(STATS), dtype=torch.float64)
        grad_norm, applied, train_tokens = None, 0, 0
        parts = split_mini_batches(len(sequences), g.mini_batches)
        present = torch.tensor([len(p) for p in parts], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(present)  # a mini-batch empty on every rank is skipped
        stand_in = TrainingSequence(groups[0][0], 0.0, weight=0.0) if groups else None
        shares = update_shares(consumed, g.mini_batches)
        for part, everywhere, share in zip(parts, present.tolist(), shares):
            chosen = [sequences[i] for i in part]
            train_tokens += sum(len(s) for s in chosen)
            part_stats, ok, norm = self._update(chosen or [stand_in], int(everywhere), share)
            stats += part_stats
            if ok:
                applied += 1
                grad_norm = norm
        lap("update")
        return self._reduce(iteration, groups, rewards, adv.num_skipped, drift, stats, seconds,
                            train_tokens, grad_norm, applied, counts, batch.skipped, consumed)

    # ------------------------------------------------------------------ metrics

    def _reduce(self, iteration, groups, rewards, skipped_groups, drift, stats, seconds,
                train_tokens, grad_norm, applied, counts, data_skipped, consumed) -> StepReport:
        flat = [r for group in groups for r in group]
        data = torch.zeros(9, dtype=torch.float64)
        if self.reports_data:
            data[0] = len(flat)
            data[1:4] = rewards.sum(dim=0)
            data[4] = sum(len(r.token_ids) for r in flat)
            data[5] = sum(r.finish_reason == "length" for r in flat)
            data[6] = skipped_groups
            data[7] = len(groups)
            data[8] = train_tokens
        loss = torch.zeros(len(STATS) + 3, dtype=torch.float64)
        if self.reports_loss:
            loss[:len(STATS)] = stats
            loss[len(STATS):] = drift[[0, 1, 3]]
        summed = torch.cat([data, loss]).to(self.device)
        torch.distributed.all_reduce(summed)
        peaks = torch.tensor([drift[2].item() if self.reports_loss else 0.0,
                              *[seconds[p] for p in PHASES]], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(peaks, op=torch.distributed.ReduceOp.MAX)
        gathered: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, (counts, data_skipped) if self.reports_data
                                            else (Counter(), {}))
        total_counts, total_skipped = Counter(), Counter()
        for c, skipped in gathered:
            total_counts.update(c)
            total_skipped.update(skipped)
        summed, peaks = summed.cpu().tolist(), peaks.cpu().tolist()
        n, gen_tokens, train_tok = summed[0], summed[4], summed[8]
        s = dict(zip(STATS, summed[9:9 + len(STATS)]))
        drift_total = Drift.from_sums(summed[9 + len(STATS)], summed[10 + len(STATS)], peaks[0],
                                      summed[11 + len(STATS)])
        check_drift(drift_total, self.cfg.grpo.max_logprob_error_ratio, iteration)
        time_of = dict(zip(PHASES, peaks[1:]))
        step_time = sum(time_of.values())
        tokens = max(s["tokens"], 1.0)
        metrics = {
            "reward": summed[1] / n, "reward_format": summed[2] / n, "accuracy": summed[3] / n,
            "response_length": gen_tokens / n,
            "truncated_fraction": summed[5] / n,
            "skipped_groups": summed[6], "groups": summed[7],
            "loss": s["loss_sum"] / max(s["loss_count"], 1.0) if applied else None,
            "kl": s["kl"] / tokens, "clip_fraction": s["clipped"] / tokens,
            "entropy": s["entropy"] / tokens, "train_tokens": train_tok,
            "rollout_tokens_per_s": gen_tokens / max(time_of["rollout"], 1e-9),
            "train_tokens_per_s": train_tok / max(time_of["update"], 1e-9),
            "updates_applied": applied, "lr": self.current_lr(),
            "grad_norm": grad_norm,
            "logprob_tokens": drift_total.tokens, "logprob_mean_abs_delta": drift_total.mean_abs,
            "logprob_max_abs_delta": drift_total.max_abs,
            "logprob_error_ratio": drift_total.error_ratio, "step_time": step_time,
            **{f"time_{p}": time_of[p] for p in PHASES},
            **{f"time_share_{p}": time_of[p] / max(step_time, 1e-9) for p in PHASES},
        }
        total_counts["skipped_groups"] += int(summed[6])
        metrics = {k: None if isinstance(v, float) and math.isnan(v) else v
                   for k, v in metrics.items()}
        return StepReport(metrics=metrics, samples=int(summed[7]), tokens=int(train_tok),
                          consumed=consumed, skipped=total_skipped, counts=total_counts)
