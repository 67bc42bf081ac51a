"""GRPO prompts from the GRPO set (an Energon dataset of datakit samples), a rollout batch each step.

The task encoder is the training one (`FlemingTaskEncoder`: the same cooking, checks, tiling and
tile decoder) with two stages changed: pre-encoding renders only the prompt — the system and
user turns up to the assistant header, where generation takes over — and keeps the reference
answer, the options and the question type as the reward's `AnswerKey`; batching keeps the prompts
as a list (they are generated N times each, not stacked). Samples whose answer cannot be checked
(captions, reports, interleaved documents, conversations of several turns) are skipped and
counted (``unverifiable``),
as are prompts longer than ``data.max_prompt_len`` (``too_long``).

Every rank of a data-parallel replica builds the same loader over the same slice, so the ranks of
one model replica generate for the same prompts; energon's loader state is saved with each
checkpoint, so a resumed run draws exactly the prompts an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses

import torch
from megatron.energon import (
    Batch,
    Sample,
    SavableDataLoader,
    WorkerConfig,
    edataclass,
    get_savable_loader,
    get_train_dataset,
    stateless,
)

from datakit.energon_format import FlemingVQASample
from megatron_fleming.data.decode import CorruptImageError, image_size
from megatron_fleming.data.prompt import IMAGE_PLACEHOLDER, PromptError
from megatron_fleming.data.task_encoder import FlemingTaskEncoder, TaskEncoderConfig
from megatron_fleming.data.tiling import TilePlan, TilingConfig
from megatron_fleming.data.tokenizer import ChatTokenizer
from megatron_fleming.grpo.rewards import AnswerKey
from megatron_fleming.model.config import VLMConfig

VERIFIABLE = ("mcq", "yes_no", "open")


@edataclass
class PromptSample(Sample):
    """One prompt: its ids (through ``<|im_start|>assistant\\n``), tiles, and answer key."""

    prompt_ids: list[int]
    answer: AnswerKey
    lang: str
    plans: list[TilePlan]
    media: list
    pixel_values: torch.Tensor | None = None  # [tiles, 3, S, S] after post-encoding


@edataclass
class PromptBatch(Batch):
    """A data-parallel rank's prompts of one rollout batch and the samples skipped meanwhile."""

    prompts: list[PromptSample]
    skipped: dict[str, int]


class GRPOTaskEncoder(FlemingTaskEncoder):
    def __init__(self, tokenizer: ChatTokenizer, config: TaskEncoderConfig) -> None:
        super().__init__(tokenizer, config)
        self.assistant_header = [self.renderer.im_start] + tokenizer.encode("assistant\n")

    def prompt_ids(self, question: str, tiles: list[int]) -> list[int]:
        """The rendered system and user turns followed by the assistant header."""
        rendered = self.renderer.render([{"from": "human", "value": question}], tiles)
        return rendered.input_ids + self.assistant_header

    @staticmethod
    def _question_turn(sample: FlemingVQASample) -> str | None:
        turns = [t for t in sample.conversation if isinstance(t, dict)]
        if len(turns) != 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
            return None
        value = turns[0].get("value")
        return value if isinstance(value, str) else None

    @staticmethod
    def _turn_fields(meta: dict) -> dict:
        """The one turn's question type, options and answer (``fleming-vqa/2`` keeps them per
        turn in ``turns``); a sample of several turns has none (GRPO asks one question)."""
        turns = meta.get("turns")
        return turns[0] if isinstance(turns, list) and len(turns) == 1 and isinstance(turns[0], dict) else {}

    @stateless
    def preencode_sample(self, sample: FlemingVQASample) -> PromptSample:
        meta = sample.meta
        turn = self._turn_fields(meta)
        qtype = turn.get("question_type")
        question = self._question_turn(sample) if isinstance(sample, FlemingVQASample) else None
        answer = turn.get("answer")
        if qtype not in VERIFIABLE or question is None or not isinstance(answer, str) \
                or not answer.strip():
            raise self.skips.skip("unverifiable", sample,
                                  f"question_type {qtype!r}, {len(sample.conversation)} turns")
        try:
            sizes = [image_size(m) for m in sample.images]
        except CorruptImageError as e:
            raise self.skips.skip("corrupt_image", sample, str(e)) from None
        plans = self.plan(sizes, meta.get("modality"))
        try:
            ids = self.prompt_ids(question, [p.num_tiles for p in plans])
        except PromptError as e:
            raise self.skips.skip("bad_conversation", sample, str(e)) from None
        if len(ids) > self.cfg.max_seq_len:
            raise self.skips.skip("too_long", sample,
                                  f"{len(ids)} prompt tokens > max_prompt_len {self.cfg.max_seq_len}")
        options = tuple(turn.get("options") or ()) if qtype == "mcq" else ()
        key = AnswerKey(question_type=qtype, answer=answer, options=options,
                        question=question.replace(IMAGE_PLACEHOLDER, "").strip())
        return PromptSample.derive_from(sample, prompt_ids=ids, answer=key,
                                        lang=str(meta.get("lang", "en")), plans=plans,
                                        media=list(sample.images))

    @stateless
    def postencode_sample(self, sample: PromptSample) -> PromptSample:
        try:
            pixels = self.tile_decoder(sample.media, sample.plans) if sample.media else None
        except CorruptImageError as e:
            raise self.skips.skip("corrupt_image", sample, str(e)) from None
        return dataclasses.replace(sample, media=[], pixel_values=pixels)

    @stateless
    def batch(self, samples: list[PromptSample]) -> PromptBatch:
        return PromptBatch(__key__=[s.__key__ for s in samples], __restore_key__=(),
                           __sources__=tuple(src for s in samples for src in (s.__sources__ or ())),
                           prompts=list(samples), skipped=self.skips.drain())


def prompt_encoder_config(vlm: VLMConfig, *, max_tiles: int, system_prompt: str | None,
                          max_prompt_len: int) -> TaskEncoderConfig:
    """The training encoder's config for GRPO prompts: the model's tile size and tokens per tile,
    at most `max_tiles` tiles per image (no thumbnail with one tile)."""
    tiling = TilingConfig(image_size=vlm.vision.image_size, max_tiles=max_tiles)
    return TaskEncoderConfig(tiling=tiling, tokens_per_tile=vlm.tokens_per_tile,
                             v2pe_delta=vlm.v2pe_delta, system_prompt=system_prompt,
                             max_seq_len=max_prompt_len)


def build_prompt_loader(data, encoder: GRPOTaskEncoder, *, prompts_per_rank: int, seed: int,
                        dp_rank: int, dp_size: int) -> SavableDataLoader:
    """energon's savable loader of this data-parallel rank's prompts, one rollout batch per item;
    loops over epochs. `data` is the config's ``data`` section."""
    if data.path is None:
        raise ValueError("data.path is not set: pass --data DIR (the GRPO set written by "
                         "python -m datakit.llm.grpo_prep) or set data.path")
    worker_config = WorkerConfig(rank=dp_rank, world_size=dp_size, num_workers=data.num_workers,
                                 seed_offset=seed)
    dataset = get_train_dataset(
        data.path, split_part=data.split, worker_config=worker_config, batch_size=prompts_per_rank,
        shuffle_buffer_size=data.shuffle_buffer_size,
        max_samples_per_sequence=data.max_samples_per_sequence, task_encoder=encoder)
    return get_savable_loader(dataset)
