"""How the ranks of one model replica talk during generation.

Pipeline stages pass hidden states forward (stage k sends [s, b, h] to stage k + 1) once per
step; the sampling rank (last pipeline stage, tensor-parallel rank 0) chooses the tokens and
broadcasts them, with their log-probabilities, to every rank of the replica, so that all stages
embed and stop on the same tokens. Plain `torch.distributed` point-to-point and broadcast calls
(megatron's `inference.communication_utils` assert CUDA tensors, and these also run on the CPU
ranks of the tests). Data-parallel replicas generate independently.
"""

from __future__ import annotations

import torch
from megatron.core import parallel_state


class ReplicaLinks:
    """This rank's place in its model replica and the calls that move tensors inside it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.distributed = torch.distributed.is_initialized()
        self.first = parallel_state.is_pipeline_first_stage(ignore_virtual=True)
        self.last = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
        self.pp = parallel_state.get_pipeline_model_parallel_world_size()
        self.group = parallel_state.get_model_parallel_group() if self.distributed else None
        sampler = self.last and parallel_state.get_tensor_model_parallel_rank() == 0
        self.samples = sampler
        self.source = 0
        if self.distributed and torch.distributed.get_world_size(self.group) > 1:
            me = torch.tensor([torch.distributed.get_rank() if sampler else -1], device=device)
            torch.distributed.all_reduce(me, op=torch.distributed.ReduceOp.MAX, group=self.group)
            self.source = int(me.item())
        else:
            self.group = None

    def receive_hidden(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        buffer = torch.empty(shape, dtype=dtype, device=self.device)
        torch.distributed.recv(buffer, src=parallel_state.get_pipeline_model_parallel_prev_rank())
        return buffer

    def send_hidden(self, hidden: torch.Tensor) -> None:
        torch.distributed.send(hidden.contiguous(),
                               dst=parallel_state.get_pipeline_model_parallel_next_rank())

    def share(self, chosen: torch.Tensor | None, rows: int) -> torch.Tensor:
        """[2, rows] float64 (token ids, log-probs) from the sampling rank to the whole replica."""
        if self.group is None:
            return chosen
        if not self.samples:
            chosen = torch.empty((2, rows), dtype=torch.float64, device=self.device)
        torch.distributed.broadcast(chosen, src=self.source, group=self.group)
        return chosen
