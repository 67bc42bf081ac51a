"""Typed samples and batches of the Fleming task encoder, and how sequences become a batch.

Stages (energon's names): a cooked `FlemingVQASample` is *pre-encoded* into an `EncodedSample`
(tokens, targets, V2PE positions, the tiling plan; no pixels, so energon's packing buffer stays
small), *post-encoded* (pixels), *packed* into a `PackedSample` (several sequences back to back)
and *batched* into a `VLMBatch`.

Two batch layouts, matching `FlemingVLM.forward`:

- ``packed``: one row ``[1, T]`` holding every sequence of the batch back to back;
  ``cu_seqlens`` ([n + 1], int32) delimits them, attention is causal within each, positions
  restart at each; padding (if any) follows ``cu_seqlens[-1]``.
- ``padded``: one sequence per row ``[B, T]``, right-padded; no ``cu_seqlens``.

``labels`` are next-token targets aligned with ``input_ids`` (already shifted, -100 where no loss:
prompt tokens, the last token of every sequence, padding); ``loss_mask`` is ``labels != -100``.
``pixel_values`` holds the tiles of every image in token order, so the i-th run of 256
``<IMG_CONTEXT>`` tokens belongs to tile i.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import torch
from megatron.energon import Batch, Sample, edataclass

from megatron_fleming.data.prompt import IGNORE_INDEX
from megatron_fleming.data.tiling import TilePlan


@edataclass
class EncodedSample(Sample):
    """One conversation, tokenised. ``media`` holds the encoded images until post-encoding
    replaces them by ``pixel_values``."""

    input_ids: torch.Tensor  # [T] int64
    labels: torch.Tensor  # [T] int64, next-token targets
    position_ids: torch.Tensor  # [T] float32, V2PE
    plans: list[TilePlan]
    media: list
    pixel_values: torch.Tensor | None = None  # [tiles, 3, S, S] uint8 (normalised by the model)

    @property
    def num_tiles(self) -> list[int]:
        return [p.num_tiles for p in self.plans]

    def __len__(self) -> int:
        return int(self.input_ids.numel())


@edataclass
class PackedSample(Sample):
    """Several encoded sequences back to back (one for an unpacked sample)."""

    input_ids: torch.Tensor  # [T]
    labels: torch.Tensor  # [T]
    position_ids: torch.Tensor  # [T] float32
    #: Tiles of each sample, in order; concatenated once, when the batch is made.
    pixel_values: list[torch.Tensor]
    num_tiles: list[int]  # per image, in token order
    seq_lens: list[int]
    keys: list[str]

    @classmethod
    def of(cls, samples: list[EncodedSample]) -> PackedSample:
        if not samples:
            raise ValueError("cannot pack zero samples")
        for s in samples:
            if s.pixel_values is None:
                raise ValueError(f"sample {s.__key__} was not post-encoded (no pixel_values)")
        return cls(
            __key__=",".join(s.__key__ for s in samples),
            __restore_key__=(),
            __subflavors__=samples[0].__subflavors__,
            __sources__=tuple(src for s in samples for src in (s.__sources__ or ())),
            input_ids=torch.cat([s.input_ids for s in samples]),
            labels=torch.cat([s.labels for s in samples]),
            position_ids=torch.cat([s.position_ids for s in samples]),
            pixel_values=[s.pixel_values for s in samples],
            num_tiles=[n for s in samples for n in s.num_tiles],
            seq_lens=[len(s) for s in samples],
            keys=[s.__key__ for s in samples],
        )


@edataclass
class VLMBatch(Batch):
    """What one micro-batch feeds `FlemingVLM.forward` (see the module docstring)."""

    input_ids: torch.Tensor  # [B, T] int64
    labels: torch.Tensor  # [B, T] int64
    loss_mask: torch.Tensor  # [B, T] float32
    position_ids: torch.Tensor  # [B, T] float32
    pixel_values: torch.Tensor  # [tiles, 3, S, S] uint8
    num_tiles: torch.Tensor  # [images] int64
    cu_seqlens: torch.Tensor | None  # [n + 1] int32, packed layout only
    max_seqlen: int | None
    #: Samples skipped while this batch was assembled (in this worker), by reason.
    skipped: dict[str, int]

    @property
    def num_loss_tokens(self) -> int:
        return int(self.loss_mask.sum())

    # Leaving a loader worker, each tensor would pass through its own shared-memory segment,
    # whose file descriptor costs the trainer a socket handshake with the worker (~4 ms each on
    # a busy host: 7 tensors per batch made most of the demo's data wait). Tensors up to
    # BY_VALUE_BYTES travel as pickled bytes instead; larger ones (pixels of many 448-px tiles)
    # keep shared memory.
    def __getstate__(self) -> list:
        return [_by_value(getattr(self, f.name)) for f in dataclasses.fields(self)]

    def __setstate__(self, state: list) -> None:
        for f, value in zip(dataclasses.fields(self), state):
            object.__setattr__(self, f.name, _from_value(value))


#: Tensors this small leave a loader worker by value (see `VLMBatch.__getstate__`).
BY_VALUE_BYTES = 4 << 20


@dataclasses.dataclass(frozen=True)
class _ByValue:
    array: np.ndarray


def _by_value(value):
    if isinstance(value, torch.Tensor) and value.device.type == "cpu" \
            and value.nbytes <= BY_VALUE_BYTES:
        return _ByValue(value.numpy())
    return value


def _from_value(value):
    return torch.from_numpy(value.array) if isinstance(value, _ByValue) else value


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)  # tiles are large: copy once


def _pad_to(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def collate_packed(packs: list[PackedSample], *, pad_id: int, pad_to_multiple_of: int,
                   skipped: dict[str, int]) -> VLMBatch:
    """All sequences of all packs in one row, delimited by cu_seqlens, padded at the end."""
    seq_lens = [n for p in packs for n in p.seq_lens]
    used = sum(seq_lens)
    total = _pad_to(used, pad_to_multiple_of)
    pad = total - used
    input_ids = torch.cat([p.input_ids for p in packs] + [torch.full((pad,), pad_id)])
    labels = torch.cat([p.labels for p in packs] + [torch.full((pad,), IGNORE_INDEX)])
    positions = torch.cat([p.position_ids for p in packs] + [torch.zeros(pad)])
    cu = torch.tensor([0, *itertools.accumulate(seq_lens)], dtype=torch.int32)
    return _batch(packs, input_ids[None], labels[None], positions[None], cu, max(seq_lens), skipped)


def collate_padded(packs: list[PackedSample], *, pad_id: int, pad_to_multiple_of: int,
                   skipped: dict[str, int]) -> VLMBatch:
    """One sequence per row, right-padded to a common length."""
    for p in packs:
        if len(p.seq_lens) != 1:
            raise ValueError(f"{p.__key__}: a pack of {len(p.seq_lens)} sequences needs the "
                             "'packed' layout; set layout='packed' or turn packing off")
    total = _pad_to(max(p.seq_lens[0] for p in packs), pad_to_multiple_of)
    input_ids = torch.full((len(packs), total), pad_id, dtype=torch.long)
    labels = torch.full((len(packs), total), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(packs), total), dtype=torch.float32)
    for row, p in enumerate(packs):
        n = p.seq_lens[0]
        input_ids[row, :n], labels[row, :n], positions[row, :n] = p.input_ids, p.labels, p.position_ids
    return _batch(packs, input_ids, labels, positions, None, None, skipped)


def _batch(packs: list[PackedSample], input_ids: torch.Tensor, labels: torch.Tensor,
           positions: torch.Tensor, cu_seqlens: torch.Tensor | None, max_seqlen: int | None,
           skipped: dict[str, int]) -> VLMBatch:
    return VLMBatch(
        __key__=[k for p in packs for k in p.keys],
        __restore_key__=(),
        __sources__=tuple(src for p in packs for src in (p.__sources__ or ())),
        input_ids=input_ids,
        labels=labels,
        loss_mask=(labels != IGNORE_INDEX).float(),
        position_ids=positions.float(),
        pixel_values=_cat([t for p in packs for t in p.pixel_values]),
        num_tiles=torch.tensor([n for p in packs for n in p.num_tiles], dtype=torch.long),
        cu_seqlens=cu_seqlens,
        max_seqlen=max_seqlen,
        skipped=skipped,
    )
