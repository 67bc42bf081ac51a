"""Rollouts -> the packed micro-batches the trainer's forward passes take.

Each kept rollout becomes one training sequence: the prompt and every sampled token but the last,
with next-token targets on the sampled tokens only, V2PE positions at the rollout's delta, and,
aligned with those targets, the sampling-time log-probs, the reference log-probs once computed,
the sequence's advantage and a loss mask. Sequences are packed into rows of at most
``max_tokens`` tokens (first-fit decreasing, the training packer) through the training collate
(`data.batch.collate_packed`), so the row layout — ``cu_seqlens``, padding, tiles in token order —
is exactly what stages 1-3 feed the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from megatron_fleming.data.batch import EncodedSample, PackedSample, VLMBatch, collate_packed
from megatron_fleming.data.packing import first_fit_decreasing
from megatron_fleming.data.prompt import IGNORE_INDEX
from megatron_fleming.grpo.rollout import Rollout
from megatron_fleming.model.v2pe import v2pe_position_ids


@dataclass
class TrainingSequence:
    """A rollout as trained on. `weight` 0 makes a stand-in that contributes nothing (a rank
    with no sequence in a mini-batch still takes part in the gradient reduction)."""

    rollout: Rollout
    advantage: float
    weight: float = 1.0
    ref_logprobs: list[float] | None = None  # per sampled token, once computed

    def __len__(self) -> int:
        return len(self.rollout.sequence_ids)


@dataclass
class MicroBatch:
    """One packed row and, aligned with its targets, what the GRPO loss needs ([1, T] each)."""

    batch: VLMBatch  # input_ids, labels, position_ids, cu_seqlens, pixel_values
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor  # float: 1 on the targets that count
    sequence: torch.Tensor  # long: the sequence's index in this row, -1 on padding
    members: list[int] = field(default_factory=list)  # indices of its sequences in the input list

    @property
    def tokens(self) -> int:
        return int(self.batch.cu_seqlens[-1])


def _encoded(seq: TrainingSequence, key: str, image_id: int, delta: float) -> EncodedSample:
    r = seq.rollout
    ids = torch.tensor(r.sequence_ids, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[len(r.prompt_ids) - 1:] = torch.tensor(r.token_ids, dtype=torch.long)
    positions = v2pe_position_ids(ids[None], image_id, delta)[0]
    # A text-only prompt adds no tiles: an empty uint8 tensor, so concatenating it with other
    # sequences' uint8 tiles keeps uint8 (a float one would promote the row's tiles to
    # un-normalised floats, which the model takes as normalised).
    pixels = r.pixel_values if r.pixel_values is not None else torch.zeros(0, dtype=torch.uint8)
    return EncodedSample(__key__=key, __restore_key__=(), input_ids=ids, labels=labels,
                         position_ids=positions, plans=[], media=[], pixel_values=pixels)


def _aligned(seq: TrainingSequence, values: list[float]) -> torch.Tensor:
    """Per-sampled-token values placed at the sequence's target positions, 0 elsewhere."""
    out = torch.zeros(len(seq), dtype=torch.float32)
    out[len(seq.rollout.prompt_ids) - 1:] = torch.tensor(values, dtype=torch.float32)
    return out


def pack_microbatches(sequences: list[TrainingSequence], *, max_tokens: int, pad_id: int,
                      image_id: int, delta: float, pad_to_multiple_of: int = 1) -> list[MicroBatch]:
    """Micro-batches holding every sequence once, in first-fit-decreasing packs."""
    groups = first_fit_decreasing([len(s) for s in sequences], max_tokens)
    out = []
    for members in groups:
        encoded = [_encoded(sequences[i], str(i), image_id, delta) for i in members]
        batch = collate_packed([PackedSample.of(encoded)], pad_id=pad_id,
                               pad_to_multiple_of=pad_to_multiple_of, skipped={})
        if batch.pixel_values.numel() == 0:
            batch.pixel_values = None
        width = batch.input_ids.shape[1]
        rows = {"old": [], "ref": [], "adv": [], "mask": [], "seq": []}
        for n, i in enumerate(members):
            seq = sequences[i]
            old = _aligned(seq, seq.rollout.logprobs)
            ref = old if seq.ref_logprobs is None else _aligned(seq, seq.ref_logprobs)
            target = torch.zeros(len(seq), dtype=torch.float32)
            target[len(seq.rollout.prompt_ids) - 1:] = seq.weight
            rows["old"].append(old)
            rows["ref"].append(ref)
            rows["adv"].append(torch.full((len(seq),), seq.advantage, dtype=torch.float32))
            rows["mask"].append(target)
            rows["seq"].append(torch.full((len(seq),), n, dtype=torch.long))
        pad = width - sum(len(sequences[i]) for i in members)
        fill = {"old": 0.0, "ref": 0.0, "adv": 0.0, "mask": 0.0, "seq": -1}
        row = {name: torch.cat(parts + [torch.full((pad,), fill[name], dtype=parts[0].dtype)])[None]
               for name, parts in rows.items()}
        out.append(MicroBatch(batch=batch, old_logprobs=row["old"], ref_logprobs=row["ref"],
                              advantages=row["adv"], mask=row["mask"], sequence=row["seq"],
                              members=list(members)))
    return out


def split_mini_batches(count: int, parts: int) -> list[list[int]]:
    """Indices 0..count-1 in `parts` contiguous runs of near-equal size (some may be empty)."""
    return [list(range(count * k // parts, count * (k + 1) // parts)) for k in range(parts)]
