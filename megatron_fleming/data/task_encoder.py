"""The Energon task encoder for datakit's shards: cooked samples -> packed `VLMBatch`es.

Stages, in energon's order (`megatron.energon.TaskEncoder`):

- cook: datakit's ``COOKERS`` (``cook_fleming_vqa``, or ``cook_fleming_interleaved`` for a
  dataset of interleaved documents), after checking the crude sample's parts;
- pre-encode: tiling plan from image headers, ChatML tokens (a document: its text with image runs
  in place, loss on every text token), shifted labels, V2PE positions; cheap, and what the
  packing buffer holds (no float pixels);
- select/pack: greedy first-fit decreasing into ``max_seq_len`` tokens (energon's
  ``packing_buffer_size`` turns this on), sequences kept apart by ``cu_seqlens``;
- post-encode: decode + tile the images to uint8 (PIL, or DALI by config) of the samples that
  made it into a pack;
- batch: one packed row (or padded rows), padded to a multiple for TP / FP8.

Bad samples are skipped and counted per reason (`skips`); each batch reports its worker's counts.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from megatron.energon import DefaultTaskEncoder, SkipSample, WorkerConfig, stateless
from megatron.energon.flavors.crude import CrudeSample

from datakit.energon_format import COOKERS, FlemingInterleavedSample, FlemingVQASample, media_parts
from datakit.sample import INTERLEAVED_SCHEMA, SCHEMA
from megatron_fleming.data.batch import (
    EncodedSample,
    PackedSample,
    VLMBatch,
    collate_packed,
    collate_padded,
)
from megatron_fleming.data.decode import CorruptImageError, PilTileDecoder, TileDecoder, image_size
from megatron_fleming.data.packing import first_fit_decreasing
from megatron_fleming.data.prompt import (
    IGNORE_INDEX,
    INTERNVL3_SYSTEM_PROMPT,
    PromptError,
    PromptRenderer,
)
from megatron_fleming.data.skips import SkipCounter
from megatron_fleming.data.tiling import TilePlan, TilingConfig, plan_tiles, single_tile_plan
from megatron_fleming.data.tokenizer import ChatTokenizer
from megatron_fleming.model.v2pe import v2pe_position_ids

VIDEO_EXTENSIONS = frozenset({"mp4", "avi", "mov", "mkv", "webm"})


@dataclass(frozen=True)
class TaskEncoderConfig:
    """How samples become batches. Defaults are InternVL3's (448 px, up to 12 tiles, 256 tokens
    per tile, its system prompt) with V2PE off (delta 1)."""

    tiling: TilingConfig = field(default_factory=TilingConfig)
    tokens_per_tile: int = 256
    max_seq_len: int = 8192  # longer samples are skipped (counted), never truncated
    v2pe_delta: float = 1.0
    #: V2PE as InternVL3 trains it: each sample draws its visual position step from this set
    #: (e.g. 1, 1/2, ..., 1/256), seeded by energon's worker seed and sample index so a restored
    #: loader draws the same; None: every sample uses `v2pe_delta` (evaluation, inference).
    v2pe_train_deltas: tuple[float, ...] | None = None
    system_prompt: str | None = INTERNVL3_SYSTEM_PROMPT
    #: Samples of these modalities are frame / slice sequences: one tile per image.
    single_tile_modalities: tuple[str, ...] = ("video", "volume")
    #: ... and so is any sample with at least this many images. Fewer images share the tile
    #: budget as InternVL does for multi-image samples: max_tiles // images each.
    single_tile_min_images: int = 4
    layout: Literal["packed", "padded"] = "packed"
    #: The padded length is a multiple of this (TP size with sequence parallelism, 16 for FP8).
    pad_to_multiple_of: int = 1
    max_tiles_per_pack: int | None = None  # bounds the ViT batch of one pack
    decoder: Literal["pil", "dali"] = "pil"
    dali_device: Literal["cpu", "mixed"] = "cpu"
    dali_threads: int = 1
    #: Skips in a row (no batch made) after which the run stops: broken data, not bad samples.
    max_consecutive_skips: int = 1000

    def __post_init__(self) -> None:
        checks = [
            (self.tokens_per_tile > 0, f"tokens_per_tile ({self.tokens_per_tile}) must be positive"),
            (self.max_seq_len > 0, f"max_seq_len ({self.max_seq_len}) must be positive"),
            (0 < self.v2pe_delta <= 1, f"v2pe_delta ({self.v2pe_delta}) must be in (0, 1]"),
            (self.v2pe_train_deltas is None or (len(self.v2pe_train_deltas) > 0 and all(
                0 < d <= 1 for d in self.v2pe_train_deltas)),
             f"v2pe_train_deltas ({self.v2pe_train_deltas}) must be a non-empty list of values "
             "in (0, 1], or null"),
            (self.single_tile_min_images >= 2,
             f"single_tile_min_images ({self.single_tile_min_images}) must be >= 2"),
            (self.layout in ("packed", "padded"), f"layout {self.layout!r}: use 'packed' or 'padded'"),
            (self.pad_to_multiple_of >= 1,
             f"pad_to_multiple_of ({self.pad_to_multiple_of}) must be >= 1"),
            (self.max_tiles_per_pack is None or self.max_tiles_per_pack >= 1,
             f"max_tiles_per_pack ({self.max_tiles_per_pack}) must be >= 1 or None"),
            (self.decoder in ("pil", "dali"), f"decoder {self.decoder!r}: use 'pil' or 'dali'"),
            (self.max_consecutive_skips >= 1,
             f"max_consecutive_skips ({self.max_consecutive_skips}) must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TaskEncoderConfig: {message}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskEncoderConfig:
        data = dict(data)
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"TaskEncoderConfig: unknown keys {sorted(unknown)}")
        tiling = TilingConfig(**data.pop("tiling", {}))
        for name in ("single_tile_modalities", "v2pe_train_deltas"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(tiling=tiling, **data)


class FlemingTaskEncoder(DefaultTaskEncoder[FlemingVQASample, EncodedSample, VLMBatch, VLMBatch]):
    """Energon task encoder for datakit shards (crude ``fleming-vqa/2`` samples: one conversation
    of one or more turns over media stored once; or ``fleming-interleaved/1`` documents where the
    dataset says so)."""

    cookers = COOKERS
    # Raw bytes from energon: sizes come from headers before packing, pixels after it.
    decoder = None

    def __init__(self, tokenizer: ChatTokenizer, config: TaskEncoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = config or TaskEncoderConfig()
        self.tokenizer = tokenizer
        self.renderer = PromptRenderer(tokenizer, tokens_per_tile=self.cfg.tokens_per_tile,
                                       system_prompt=self.cfg.system_prompt)
        self.image_context_id = tokenizer.image_context_id
        self.pad_id = tokenizer.pad_id
        self.skips = SkipCounter(max_consecutive=self.cfg.max_consecutive_skips)
        self._tile_decoder: TileDecoder | None = None

    @property
    def tile_decoder(self) -> TileDecoder:
        if self._tile_decoder is None:  # DALI is built in the worker that uses it
            size = self.cfg.tiling.image_size
            if self.cfg.decoder == "dali":
                from megatron_fleming.data.dali_decode import DaliTileDecoder

                self._tile_decoder = DaliTileDecoder(size, device=self.cfg.dali_device,
                                                     num_threads=self.cfg.dali_threads)
            else:
                self._tile_decoder = PilTileDecoder(size)
        return self._tile_decoder

    def plan(self, sizes: list[tuple[int, int]], modality: str | None) -> list[TilePlan]:
        """Tiling of each image of a sample: dynamic, shared budget, or one tile per frame."""
        n = len(sizes)
        if modality in self.cfg.single_tile_modalities or n >= self.cfg.single_tile_min_images:
            return [single_tile_plan(w, h) for w, h in sizes]
        tiling = self.cfg.tiling
        if n > 1:
            tiling = dataclasses.replace(tiling, max_tiles=max(tiling.min_tiles, tiling.max_tiles // n))
        return [plan_tiles(w, h, tiling) for w, h in sizes]

    @stateless
    def cook_crude_sample(self, sample: CrudeSample, cooker, aux) -> FlemingVQASample:
        doc = sample.get("json")
        if doc is None:
            raise self.skips.skip("missing_part", sample, "no json part")
        if isinstance(doc, (bytes, str)):
            try:
                doc = json.loads(doc)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise self.skips.skip("bad_json", sample, str(e)) from None
        expected = (sample.get("__subflavors__") or {}).get("datakit_format", SCHEMA)
        if expected not in (SCHEMA, INTERLEAVED_SCHEMA) or not isinstance(doc, dict) \
                or doc.get("schema") != expected:
            raise self.skips.skip("bad_json", sample, f"not a {expected} sample")
        listed = [m.get("part") if isinstance(m, dict) else None for m in doc.get("media") or []]
        present = media_parts(sample)
        if listed != present:
            raise self.skips.skip("missing_part", sample,
                                  f"JSON lists media {listed}, tar has {present}")
        video = [p for p in listed if p.rsplit(".", 1)[-1] in VIDEO_EXTENSIONS]
        if video:
            raise self.skips.skip("unsupported_media", sample, f"video parts {video}")
        cooked_input = CrudeSample(sample)
        cooked_input["json"] = doc
        return super().cook_crude_sample(cooked_input, cooker, aux)

    @stateless
    def preencode_sample(self, sample: FlemingVQASample | FlemingInterleavedSample) -> EncodedSample:
        try:
            sizes = [image_size(m) for m in sample.images]
        except CorruptImageError as e:
            raise self.skips.skip("corrupt_image", sample, str(e)) from None
        plans = self.plan(sizes, sample.meta.get("modality"))
        tiles = sum(p.num_tiles for p in plans)
        if self.cfg.max_tiles_per_pack is not None and tiles > self.cfg.max_tiles_per_pack:
            raise self.skips.skip("too_long", sample, f"{tiles} tiles > max_tiles_per_pack")
        try:
            tiles = [p.num_tiles for p in plans]
            if isinstance(sample, FlemingInterleavedSample):
                prompt = self.renderer.render_document(sample.text, tiles)
            else:
                prompt = self.renderer.render(sample.conversation, tiles)
        except PromptError as e:
            raise self.skips.skip("bad_conversation", sample, str(e)) from None
        if len(prompt) > self.cfg.max_seq_len:
            raise self.skips.skip("too_long", sample, f"{len(prompt)} tokens > max_seq_len "
                                  f"{self.cfg.max_seq_len}")
        input_ids = torch.tensor(prompt.input_ids, dtype=torch.long)
        aligned = torch.tensor(prompt.labels, dtype=torch.long)
        labels = torch.cat([aligned[1:], torch.tensor([IGNORE_INDEX])])  # next-token targets
        positions = v2pe_position_ids(input_ids[None], self.image_context_id, self.v2pe_delta())[0]
        return EncodedSample.derive_from(sample, input_ids=input_ids, labels=labels,
                                         position_ids=positions, plans=plans, media=list(sample.images))

    def v2pe_delta(self) -> float:
        """This sample's visual position step: drawn from `v2pe_train_deltas` when training.

        The draw is seeded by energon's worker seed (rank, worker, ``train.seed``) and the index
        energon gives this sample in pre-encoding, which it restores when it replays a saved
        packing buffer: a resumed run draws the same steps."""
        deltas = self.cfg.v2pe_train_deltas
        if not deltas:
            return self.cfg.v2pe_delta
        worker = WorkerConfig.active_worker_config
        if worker is None:
            raise RuntimeError("v2pe_train_deltas draws each sample's delta inside energon's "
                               "loader (seeded by worker and sample index); outside a loader "
                               "set v2pe_train_deltas to null")
        draw = random.Random(f"v2pe:{worker.worker_seed()}:{self.current_sample_index}")
        return draw.choice(deltas)

    @stateless
    def postencode_sample(self, sample: EncodedSample) -> EncodedSample:
        try:
            pixels = self.tile_decoder(sample.media, sample.plans)
        except CorruptImageError as e:
            raise self.skips.skip("corrupt_image", sample, str(e)) from None
        return dataclasses.replace(sample, media=[], pixel_values=pixels)

    def select_samples_to_pack(self, samples: list[EncodedSample]) -> list[list[EncodedSample]]:
        groups = first_fit_decreasing([len(s) for s in samples], self.cfg.max_seq_len,
                                      tiles=[sum(s.num_tiles) for s in samples],
                                      max_tiles=self.cfg.max_tiles_per_pack)
        return [[samples[i] for i in group] for group in groups]

    @stateless
    def pack_selected_samples(self, samples: list[EncodedSample]) -> PackedSample:
        if not samples:  # every sample of this pack was skipped in post-encoding
            raise SkipSample("empty pack")
        return PackedSample.of(samples)

    @stateless
    def batch(self, samples: list[EncodedSample | PackedSample]) -> VLMBatch:
        packs = [s if isinstance(s, PackedSample) else PackedSample.of([s]) for s in samples]
        collate = collate_packed if self.cfg.layout == "packed" else collate_padded
        return collate(packs, pad_id=self.pad_id, pad_to_multiple_of=self.cfg.pad_to_multiple_of,
                       skipped=self.skips.drain())
