"""The frozen reference policy: the initial weights, held as plain tensors, swapped in to score.

No second model is built and nothing about the reference is trainable: at start (after
``checkpoint.init_from`` is loaded, before a resumed checkpoint is) every parameter tensor of this
rank's model chunks is copied once — weights only, no gradient buffer, no optimizer state, on the
parameters' own device: one more copy of this rank's shard of the weights (bf16: 2 bytes a
parameter). To score tokens under the reference, `swapped_in` points each parameter at its
saved tensor (``param.data``, no copy), runs the forward passes, and points it back, so the
training weights, their gradient buffers and the optimizer never see the swap.

A resumed run takes the same snapshot again — from ``init_from`` (or the same seeded
initialisation) — so its reference is the initial policy, not the resumed one.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


class ReferenceWeights:
    def __init__(self, chunks: list[torch.nn.Module]) -> None:
        self.params = [p for chunk in chunks for p in chunk.parameters()]
        with torch.no_grad():
            self.saved = [p.detach().clone() for p in self.params]

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.saved)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Within the block the model computes with the reference weights."""
        training = [p.data for p in self.params]
        try:
            for p, ref in zip(self.params, self.saved):
                p.data = ref
            yield
        finally:
            for p, data in zip(self.params, training):
                p.data = data
