"""Rollouts become packed training rows exactly as the trainer needs them: targets on the sampled
tokens only, sampling-time log-probs and advantages aligned with those targets, V2PE positions
restarting per sequence at the rollout's fractional delta, stand-ins that count for nothing."""

from __future__ import annotations

import torch

from megatron_fleming.grpo.batches import TrainingSequence, pack_microbatches, split_mini_batches
from megatron_fleming.grpo.rollout import Rollout, sample_seed
from megatron_fleming.model.v2pe import v2pe_position_ids

IMG, PAD = 5, 0


def rollout(prompt, tokens, group=0, tiles=1):
    """uint8 tiles, as the prompt loader's tile decoder gives them (tiles=0: a text-only prompt)."""
    pixels = torch.full((tiles, 3, 4, 4), group, dtype=torch.uint8) if tiles else None
    return Rollout(group=group, prompt_ids=prompt, pixel_values=pixels,
                   token_ids=tokens, logprobs=[-0.1 * (i + 1) for i in range(len(tokens))],
                   finish_reason="stop", text="")


def test_grpo_microbatch_layout():
    a = rollout([1, IMG, IMG, 2, 3], [7, 8, 9], group=0)  # sequence: 5 + 2 tokens
    b = rollout([1, IMG, IMG, 4], [6, 9], group=1)  # 4 + 1
    seqs = [TrainingSequence(a, 0.5, ref_logprobs=[-1.0, -2.0, -3.0]), TrainingSequence(b, -1.5),
            TrainingSequence(a, 2.0, weight=0.0)]
    (mb,) = pack_microbatches(seqs, max_tokens=32, pad_id=PAD, image_id=IMG, delta=0.25,
                              pad_to_multiple_of=8)
    batch = mb.batch
    assert mb.members == [0, 1, 2]  # one pack, in input order
    assert batch.input_ids.tolist() == [[1, IMG, IMG, 2, 3, 7, 8, 1, IMG, IMG, 4, 6,
                                         1, IMG, IMG, 2, 3, 7, 8, PAD, PAD, PAD, PAD, PAD]]
    assert batch.cu_seqlens.tolist() == [0, 7, 12, 19]
    labels = batch.labels[0].tolist()
    assert labels[:7] == [-100, -100, -100, -100, 7, 8, 9] and labels[7:12] == [-100, -100, -100, 6, 9]
    assert labels[19:] == [-100] * 5
    assert mb.old_logprobs[0, 4:7].tolist() == torch.tensor([-0.1, -0.2, -0.3]).tolist()
    assert mb.ref_logprobs[0, 4:7].tolist() == [-1.0, -2.0, -3.0]
    assert mb.ref_logprobs[0, 10:12].tolist() == mb.old_logprobs[0, 10:12].tolist()  # none yet: old
    # the stand-in (weight 0) holds targets but no mask
    assert mb.mask[0].tolist() == [0] * 4 + [1] * 3 + [0] * 3 + [1] * 2 + [0] * 12
    assert labels[16:19] == [7, 8, 9]
    assert mb.advantages[0, 4].item() == 0.5 and mb.advantages[0, 10].item() == -1.5
    assert mb.sequence[0].tolist() == [0] * 7 + [1] * 5 + [2] * 7 + [-1] * 5
    expected = v2pe_position_ids(torch.tensor([[1, IMG, IMG, 2, 3, 7, 8]]), IMG, 0.25)[0]
    assert batch.position_ids[0, :7].tolist() == expected.tolist()
    assert batch.position_ids[0, 12:19].tolist() == expected.tolist()
    assert batch.position_ids[0, :4].tolist() == [0.0, 0.25, 0.5, 2.0]  # ceil(0.5) + 1 = 2
    assert batch.pixel_values[:, 0, 0, 0].tolist() == [0, 1, 0]  # tiles in token order
    assert batch.pixel_values.dtype == torch.uint8  # the model normalises them on its device


def test_grpo_text_only_prompts_leave_the_row_tiles_uint8():
    """A text-only prompt packed beside image prompts adds no tiles and keeps them uint8 (a float
    empty tensor would promote them to un-normalised floats the model takes as normalised)."""
    text, image = rollout([1, 2, 3], [7, 8], tiles=0), rollout([1, IMG, IMG, 4], [6, 9], group=3)
    seqs = [TrainingSequence(text, 1.0), TrainingSequence(image, -1.0)]
    (mb,) = pack_microbatches(seqs, max_tokens=32, pad_id=PAD, image_id=IMG, delta=0.25)
    assert mb.batch.pixel_values.dtype == torch.uint8
    assert mb.batch.pixel_values[:, 0, 0, 0].tolist() == [3]
    (only_text,) = pack_microbatches(seqs[:1], max_tokens=32, pad_id=PAD, image_id=IMG, delta=0.25)
    assert only_text.batch.pixel_values is None


def test_grpo_packing_respects_the_budget_and_split():
    seqs = [TrainingSequence(rollout([1, 2, 3], [4] * n), 1.0) for n in (5, 3, 6, 2, 4)]
    micro = pack_microbatches(seqs, max_tokens=10, pad_id=PAD, image_id=IMG, delta=1.0)
    assert sorted(i for mb in micro for i in mb.members) == [0, 1, 2, 3, 4]
    assert all(mb.tokens <= 10 for mb in micro)
    assert split_mini_batches(10, 4) == [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]]
    assert split_mini_batches(2, 4) == [[], [0], [], [1]]


def test_grpo_sample_seeds_depend_on_iteration_key_and_index_only():
    seeds = {sample_seed(1, i, k, j) for i in (1, 2) for k in ("a", "b") for j in range(4)}
    assert len(seeds) == 16
    assert sample_seed(1, 3, "a", 0) == sample_seed(1, 3, "a", 0) != sample_seed(2, 3, "a", 0)
