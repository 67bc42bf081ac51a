"""Parallel state, per-stage model building and DDP wrapping, in that order.

1. `initialize_parallel(par)`: process group (gloo on CPU, through the CPU shim; nccl on GPU),
   megatron's TP/PP/CP/DP groups, model-parallel RNG streams.
2. `build_model_chunks(cfg, par)`: one `FlemingVLM` per virtual pipeline stage of this rank, with
   vision + projector + embedding on the first stage and the LM head on the last; bf16 models are
   wrapped in megatron's Float16Module.
3. `wrap_with_ddp(chunks, ddp_config)`: megatron DistributedDataParallel (grad buffers, the
   distributed optimizer's sharding); freeze components (`freeze`) before this step.
"""

from __future__ import annotations

import datetime
import os

import torch
from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed
from megatron.core.transformer.module import Float16Module, MegatronModule

from megatron_fleming.model.config import ParallelConfig, VLMConfig
from megatron_fleming.model.vlm import FlemingVLM


def initialize_parallel(par: ParallelConfig, *, seed: int = 1234, timeout_minutes: int = 10) -> None:
    """Set up torch.distributed (from torchrun's env) and megatron's parallel groups."""
    if par.device == "cpu":
        from megatron_fleming.cpu_shim import install_cpu_shim

        install_cpu_shim()
    elif not torch.cuda.is_available():
        raise RuntimeError("ParallelConfig.device='cuda' but no GPU is visible; use device='cpu'")
    else:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend="gloo" if par.device == "cpu" else "nccl",
            timeout=datetime.timedelta(minutes=timeout_minutes))
    world = torch.distributed.get_world_size()
    model_parallel = par.tensor_parallel * par.pipeline_parallel * par.context_parallel
    if world % model_parallel:
        raise ValueError(f"world size {world} is not a multiple of TP x PP x CP = {model_parallel}; "
                         "launch a multiple of that many processes")
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=par.tensor_parallel,
        pipeline_model_parallel_size=par.pipeline_parallel,
        virtual_pipeline_model_parallel_size=par.virtual_pipeline_parallel,
        context_parallel_size=par.context_parallel,
        create_gloo_process_groups=True,
    )
    seed_model_parallel_rng(seed)


def seed_model_parallel_rng(seed: int) -> None:
    """Same seed on every rank for replicated draws; megatron's tracker keeps the TP streams."""
    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed)


def shutdown_parallel() -> None:
    parallel_state.destroy_model_parallel()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def build_model_chunks(cfg: VLMConfig, par: ParallelConfig) -> list[MegatronModule]:
    """This rank's model chunks (one per virtual pipeline stage), on `par.device`."""
    vpp = par.virtual_pipeline_parallel
    chunks: list[MegatronModule] = []
    for vp_stage in range(vpp or 1):
        stage = vp_stage if vpp else None
        model = FlemingVLM(
            cfg, par,
            pre_process=parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=stage),
            post_process=parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=stage),
            vp_stage=stage)
        if par.device == "cuda":
            model.cuda(torch.cuda.current_device())
        if par.dtype == "bf16":
            model = Float16Module(model.config, model)
        chunks.append(model)
    return chunks


def wrap_with_ddp(chunks: list[MegatronModule], ddp_config: DistributedDataParallelConfig
                  ) -> list[DistributedDataParallel]:
    """megatron DDP around each chunk; only the first chunk buckets its gradients."""
    return [
        DistributedDataParallel(config=chunk.config, ddp_config=ddp_config, module=chunk,
                                disable_bucketing=index > 0)
        for index, chunk in enumerate(chunks)
    ]


def unwrap(model: torch.nn.Module) -> FlemingVLM:
    """The FlemingVLM inside DDP / Float16Module wrappers."""
    while not isinstance(model, FlemingVLM):
        if not hasattr(model, "module"):
            raise TypeError(f"{type(model).__name__} wraps no FlemingVLM")
        model = model.module
    return model
