"""`StageModel` (this rank's model chunks, the optimizer, the model's checkpoint state) and
`TrainModule` (stages 1-3: the schedule and one training step; the `protocol.StageModule` that
`Trainer` drives). GRPO's module builds on `StageModel` too.

A stage is counted in conversations (`schedule.StageLength`): each step counts what its global
batch consumed (packed + skipped, over data parallel), advances the learning-rate schedule by it,
and the stage is finished once it has consumed its length.

Built in the order megatron needs (see `megatron_fleming.model.parallel`): model chunks for this
pipeline rank, freezing for the stage (before DDP, so frozen weights get no gradient buffer and no
optimizer state), megatron DDP, then the optimizer over what is left trainable.

A step is one optimizer update over the global batch: the micro-batches of this data-parallel
rank go through megatron's pipeline schedule (`get_forward_backward_func`: no pipelining, 1F1B,
or interleaved 1F1B with virtual stages), gradients are reduced and divided by the loss tokens of
the whole global batch (`finalize_model_grads`), clipped to the configured global norm, and
applied.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallelConfig, finalize_model_grads
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_fleming.data.batch import VLMBatch
from megatron_fleming.data.skips import REASONS
from megatron_fleming.model.config import VLMConfig
from megatron_fleming.model.freeze import freeze_for_stage, trainable_parameter_count
from megatron_fleming.model.parallel import build_model_chunks, unwrap, wrap_with_ddp
from megatron_fleming.train.config import TrainConfig
from megatron_fleming.train.fp8 import require_fp8_runtime, with_fp8
from megatron_fleming.train.optim import build_optimizer, build_scheduler
from megatron_fleming.train.plan import conversation_flops, sequence_lengths
from megatron_fleming.train.protocol import StepReport
from megatron_fleming.train.schedule import StageLength, global_consumed
from megatron_fleming.train.step import LOSS_KEY, batch_to_device, forward_step


@dataclass(frozen=True)
class StepResult:
    """This rank's view of one step; loss fields are non-zero on the last pipeline stage only."""

    loss_sum: float  # summed token losses of this rank's micro-batches
    loss_tokens: int
    grad_norm: float | None  # global (all ranks), after reduction, before clipping
    lr: float
    update_applied: bool


class StageModel:
    """This rank's model chunks for a stage — frozen as the stage says, in megatron DDP — the
    optimizer over what still trains, megatron's hooks, and the model's state for checkpoints.
    Stages 1-3 (`TrainModule`) and GRPO (`grpo.train_module.GRPOTrainModule`) build on it; `cfg`
    is either stage's config (its ``parallel``, ``optimizer`` and ``fp8`` sections)."""

    def __init__(self, cfg, vlm: VLMConfig, stage: int, length: StageLength) -> None:
        self.cfg = cfg
        self.vlm = vlm
        self.length = length
        require_fp8_runtime(cfg.fp8)
        par = with_fp8(cfg.parallel, cfg.fp8)
        self.device = torch.device("cuda", torch.cuda.current_device()) if par.device == "cuda" \
            else torch.device("cpu")
        chunks = build_model_chunks(vlm, par)
        freeze_for_stage(chunks, stage)
        self.trainable = trainable_parameter_count(chunks)
        opt = cfg.optimizer
        ddp_config = DistributedDataParallelConfig(
            grad_reduce_in_fp32=True,
            overlap_grad_reduce=opt.overlap_grad_reduce,
            overlap_param_gather=opt.overlap_param_gather,
            use_distributed_optimizer=opt.distributed,
            check_for_nan_in_grad=True,
        )
        self.model = wrap_with_ddp(chunks, ddp_config)
        self.optimizer = build_optimizer(cfg, self.model)
        self._wire_megatron_hooks()
        # One rank per data-parallel replica reports data counters, one reports the loss.
        first_tp = parallel_state.get_tensor_model_parallel_rank() == 0
        self.reports_data = first_tp and parallel_state.is_pipeline_first_stage(ignore_virtual=True)
        self.reports_loss = first_tp and parallel_state.is_pipeline_last_stage(ignore_virtual=True)

    def _wire_megatron_hooks(self) -> None:
        """What megatron's schedules call back into: grad finalisation, loss scaling, and the
        no-sync context so gradients reduce once per step, not once per micro-batch."""
        config = unwrap(self.model[0]).config
        config.finalize_model_grads_func = finalize_model_grads
        config.grad_scale_func = self.optimizer.scale_loss
        if self.cfg.optimizer.overlap_grad_reduce:
            no_sync = [chunk.no_sync for chunk in self.model]
            config.no_sync_func = no_sync[0] if len(no_sync) == 1 else no_sync

    @property
    def chunks(self) -> list[torch.nn.Module]:
        """The unwrapped `FlemingVLM` chunks (what checkpoints and tests read)."""
        return [unwrap(chunk) for chunk in self.model]

    def current_lr(self) -> float:
        groups = self.optimizer.param_groups
        return float(groups[0]["lr"]) if groups else self.scheduler.get_lr({})

    def finished(self, consumed: int) -> bool:
        """The stage ends once it has consumed its length (the step reaching it is the last)."""
        return self.length.finished(consumed)

    def before_save(self) -> None:
        pass  # the checkpointer syncs parameters itself

    def sync_params(self) -> None:
        """Finish pending parameter all-gathers before the weights are read (a checkpoint).

        With ``overlap_param_gather`` the distributed optimizer's updated shards reach the other
        ranks during the next forward pass; megatron-LM syncs them before saving the same way.
        """
        if self.cfg.optimizer.overlap_param_gather:
            for chunk in self.model:
                chunk.disable_forward_pre_hook(param_sync=True)
                chunk.enable_forward_pre_hook()

    def model_keys(self) -> list[str]:
        """``model`` for one chunk, ``model0``, ``model1`` ... with virtual pipeline stages."""
        return ["model"] if len(self.model) == 1 else [f"model{i}" for i in range(len(self.model))]

    def model_sharded_state_dict(self) -> dict:
        """The model chunks as megatron dist-checkpointing shards them (TP/PP-independent)."""
        return {key: chunk.sharded_state_dict() for key, chunk in zip(self.model_keys(), self.chunks)}

    def load_model_state_dict(self, state: dict) -> None:
        for key, chunk in zip(self.model_keys(), self.chunks):
            chunk.load_state_dict(state[key], strict=True)


class TrainModule(StageModel):
    """Stages 1-3: one optimizer update over a global batch of micro-batches per step."""

    console_metrics = (("epoch", ".3f"), ("loss", ".6f"), ("lr", ".3e"), ("grad_norm", ".4f"),
                       ("tokens_per_s", ".1f"), ("model_tflops", ".3g"), ("samples_per_s", ".2f"))

    def __init__(self, cfg: TrainConfig, vlm: VLMConfig, length: StageLength, *,
                 pad_id: int | None = None) -> None:
        super().__init__(cfg, vlm, cfg.train.stage, length)
        self.pad_id = pad_id  # counts the tokens of padded batches in `step`
        self.scheduler = build_scheduler(cfg, self.optimizer, length)
        self.batches_per_step = cfg.microbatches(parallel_state.get_data_parallel_world_size())

    def train_step(self, batches: list[VLMBatch], *, consumed: int) -> StepResult:
        """One optimizer update over this rank's micro-batches of the global batch; `consumed` is
        the conversations the whole global batch used up (`schedule.global_consumed`), which
        advance the learning-rate schedule."""
        batches = [batch_to_device(b, self.device) for b in batches]
        for chunk in self.model:
            chunk.train()
            chunk.zero_grad_buffer()
        self.optimizer.zero_grad()
        # Interleaved schedules draw from one iterator per virtual stage, in the same order.
        iterators = [iter(batches) for _ in self.model]
        reports = get_forward_backward_func()(
            forward_step_func=forward_step,
            data_iterator=iterators if len(iterators) > 1 else iterators[0],
            model=self.model,
            num_microbatches=len(batches),
            seq_length=max(b.input_ids.shape[1] for b in batches),
            micro_batch_size=batches[0].input_ids.shape[0],
            forward_only=False,
        )
        self.scheduler.step(consumed)  # this step runs at the lr of the count it reaches
        update_applied, grad_norm, _ = self.optimizer.step()
        loss_sum, loss_tokens = 0.0, 0
        if parallel_state.is_pipeline_last_stage(ignore_virtual=True):
            for report in reports:
                loss_sum += float(report[LOSS_KEY][0])
                loss_tokens += int(report[LOSS_KEY][1])
        return StepResult(loss_sum=loss_sum, loss_tokens=loss_tokens,
                          grad_norm=None if grad_norm is None else float(grad_norm),
                          lr=self.current_lr(), update_applied=bool(update_applied))

    def _pad_id(self) -> int:
        if self.pad_id is None:
            raise ValueError("TrainModule needs pad_id to count the tokens of padded batches")
        return self.pad_id

    def _tokens(self, batch: VLMBatch) -> int:
        if batch.cu_seqlens is not None:
            return int(batch.cu_seqlens[-1])
        return int((batch.input_ids != self._pad_id()).sum())

    def _flops(self, batch: VLMBatch) -> float:
        pad_id = -1 if batch.cu_seqlens is not None else self._pad_id()
        lengths = sequence_lengths(batch.cu_seqlens, batch.input_ids, pad_id)
        return conversation_flops(self.vlm, lengths, int(batch.pixel_values.shape[0]))

    def step(self, batches: list[VLMBatch], iteration: int) -> StepReport:
        """`train_step` advanced by the conversations the global batch consumed, with loss,
        tokens, samples, model FLOPs and skips summed over the global batch."""
        consumed = global_consumed(batches, self.device)
        result = self.train_step(batches, consumed=consumed)
        values = torch.zeros(5 + len(REASONS), dtype=torch.float64)
        if self.reports_loss:
            values[0], values[1] = result.loss_sum, result.loss_tokens
        if self.reports_data:
            values[2] = sum(self._tokens(b) for b in batches)
            values[3] = sum(len(b.__key__) for b in batches)
            values[4] = sum(self._flops(b) for b in batches)
            for b in batches:
                for reason, count in b.skipped.items():
                    values[5 + REASONS.index(reason)] += count
        values = values.to(self.device)
        torch.distributed.all_reduce(values)
        values = values.cpu().tolist()
        skipped = Counter({r: int(n) for r, n in zip(REASONS, values[5:]) if n})
        metrics = {"loss": values[0] / max(values[1], 1.0), "lr": result.lr,
                   "grad_norm": result.grad_norm, "loss_tokens": int(values[1])}
        return StepReport(metrics=metrics, samples=int(values[3]), tokens=int(values[2]),
                          consumed=consumed, flops=values[4], skipped=skipped)
