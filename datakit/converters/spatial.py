"""Masks -> spatial VQA: lesion presence, count, location, box and size; organ presence and place.

Lesion tasks read the mask named by ``facts["lesion_mask"]`` ("lesion" for BUSI, "mass" for AUL);
a record without one yields no lesion samples. An empty lesion mask (a normal image) answers
presence, count and location with "no lesion" and yields no box or size sample. Organ tasks read
every other mask whose name is in the organ vocabulary (sorted by name), plus the organs listed
in ``facts["organs_annotated"]`` that have no mask, which the annotation shows to be absent.

Options (recipe ``convert[].options``): the ``GeometryConfig`` thresholds (``min_pixels``,
``min_fraction``, ``centre_tolerance``, ``small_below``, ``large_from``) and ``location_box``
(bool, default false: add each lesion's normalised box to location answers).

Phrasings are drawn with ``rng_for(seed, record uid, task, lang)`` (organ tasks add the organ),
so English and Chinese twins are free to use different phrasings.
"""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Any

from datakit.converters.base import ConvertContext, check_context
from datakit.converters.geometry import Component, GeometryConfig, MaskFacts, mask_facts
from datakit.converters.templates import (
    Phrasing,
    RenderedQA,
    fill,
    image_words,
    template_bank,
    to_sample,
    vocabulary,
)
from datakit.errors import Rejected
from datakit.record import LoadedRecord
from datakit.registry import converter
from datakit.sample import Sample
from datakit.seeding import rng_for

NAME = "spatial"
LESION_TASKS = ("lesion_presence", "lesion_count", "lesion_location", "lesion_bbox", "lesion_size")
ORGAN_TASKS = ("organ_presence", "organ_location")
QUESTION_TYPES = {task: "open" for task in LESION_TASKS + ORGAN_TASKS} | {
    "lesion_presence": "yes_no",
    "organ_presence": "yes_no",
}
_GEOMETRY_OPTIONS = frozenset(f.name for f in fields(GeometryConfig))
_OPTIONS = _GEOMETRY_OPTIONS | {"location_box"}
# An organ the annotation covers but whose mask is absent: "not visible", nothing to locate.
_ABSENT = MaskFacts(height=1, width=1, components=(), speckle=0, extent=None)


def format_box(box: tuple[float, float, float, float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in box) + "]"


def format_percent(component: Component, facts: MaskFacts) -> str:
    """Area as a percentage with one decimal (two below 0.1 %, so a small lesion is never 0.0)."""
    percent = 100.0 * component.area_px / (facts.height * facts.width)
    return f"{percent:.1f}" if percent >= 0.1 else f"{percent:.2f}"


def _has_side(components: tuple[Component, ...]) -> bool:
    return any(c.region.endswith(("_left", "_right")) for c in components)


class _Phrasebook:
    """Picks and fills phrasings for one (task, lang) from one seeded generator."""

    def __init__(self, task: str, lang: str, rng: random.Random, common: dict[str, str]) -> None:
        self.bank = template_bank(NAME)
        self.vocab = vocabulary()
        self.task, self.lang, self.rng, self.common = task, lang, rng, common
        self.question = self.bank.pick(task, "question", lang, rng)

    def answer(self, pool: str, **fields_: Any) -> tuple[str, Phrasing]:
        phrasing = self.bank.pick(self.task, pool, self.lang, self.rng)
        return fill(phrasing, {**self.common, **fields_}), phrasing

    def qa(self, reply: str, used: Phrasing, answer: str | None = None, side_note: bool = False) -> RenderedQA:
        if side_note:
            reply += self.vocab.phrase("side_note", self.lang)
        return RenderedQA(
            question=fill(self.question, self.common),
            reply=reply,
            answer=reply if answer is None else answer,
            question_id=self.question.template_id,
            answer_id=used.template_id,
        )

    def region(self, c: Component, with_box: bool = False) -> str:
        region = self.vocab.term("regions", c.region, self.lang)
        if with_box:
            return self.vocab.phrase("location_item_box", self.lang, region=region, box=format_box(c.box))
        return self.vocab.phrase("location_item", self.lang, region=region)

    def regions(self, comps: tuple[Component, ...], with_box: bool = False) -> str:
        """Each region named once, in order of its largest lesion: several lesions in one region
        read "the upper-left part of the image (2 lesions)", never the region twice."""
        by_region: dict[str, list[Component]] = {}
        for c in comps:
            by_region.setdefault(c.region, []).append(c)
        items = []
        for group in by_region.values():
            if len(group) == 1:
                items.append(self.region(group[0], with_box))
                continue
            region = self.vocab.term("regions", group[0].region, self.lang)
            fields_ = {"region": region, "count": str(len(group))}
            if with_box:
                boxes = self.vocab.join([format_box(c.box) for c in group], self.lang)
                items.append(self.vocab.phrase("location_group_box", self.lang, boxes=boxes, **fields_))
            else:
                items.append(self.vocab.phrase("location_group", self.lang, **fields_))
        return self.vocab.join(items, self.lang)

    def yes_no(self, yes: bool) -> str:
        return self.vocab.term("yes_no", "affirmative" if yes else "negative", self.lang)


def _lesion_qa(book: _Phrasebook, facts: MaskFacts, location_box: bool) -> RenderedQA | None:
    """The QA of one lesion task, or None where the task has nothing to ask (no lesion to box)."""
    comps, task, lang, vocab = facts.components, book.task, book.lang, book.vocab
    count = len(comps)
    if task == "lesion_presence":
        reply, pid = book.answer("answer_yes" if count else "answer_no")
        return book.qa(reply, pid, answer=book.yes_no(count > 0))
    if task == "lesion_count":
        pool = "answer_none" if count == 0 else "answer_one" if count == 1 else "answer_many"
        reply, pid = book.answer(pool, count=str(count))
        return book.qa(reply, pid)
    if task == "lesion_location":
        if count == 0:
            return book.qa(*book.answer("answer_none"))
        if count == 1:
            reply, pid = book.answer("answer_one", region=book.region(comps[0], location_box))
        else:
            reply, pid = book.answer("answer_many", count=str(count), items=book.regions(comps, location_box))
        return book.qa(reply, pid, side_note=_has_side(comps))
    if count == 0:
        return None  # lesion_bbox / lesion_size: nothing to measure on a normal image
    if task == "lesion_bbox":
        if count == 1:
            return book.qa(*book.answer("answer_one", box=format_box(comps[0].box)))
        items = vocab.join([format_box(c.box) for c in comps], lang)
        return book.qa(*book.answer("answer_many", count=str(count), items=items))
    if task == "lesion_size":
        size = [vocab.term("sizes", c.size_class, lang) for c in comps]
        if count == 1:
            return book.qa(*book.answer("answer_one", size=size[0], percent=format_percent(comps[0], facts)))
        items = vocab.join(
            [
                vocab.phrase("size_item", lang, size=s, region=book.region(c), percent=format_percent(c, facts))
                for s, c in zip(size, comps)
            ],
            lang,
        )
        reply, pid = book.answer("answer_many", count=str(count), items=items)
        return book.qa(reply, pid, side_note=_has_side(comps))
    raise ValueError(f"spatial: unknown lesion task {task!r}")


def _organ_qa(book: _Phrasebook, facts: MaskFacts) -> RenderedQA | None:
    if book.task == "organ_presence":
        reply, pid = book.answer("answer_yes" if not facts.empty else "answer_no")
        return book.qa(reply, pid, answer=book.yes_no(not facts.empty))
    if facts.extent is None:
        return None  # organ_location of an absent organ
    extent = facts.extent
    reply, pid = book.answer("answer", region=book.region(extent), percent=format_percent(extent, facts))
    return book.qa(reply, pid, side_note=_has_side((extent,)))


def _parse_options(options: dict[str, Any]) -> tuple[GeometryConfig, bool]:
    location_box = options.get("location_box", False)
    if not isinstance(location_box, bool):
        raise ValueError(f"spatial: location_box must be true or false, got {location_box!r}")
    return GeometryConfig(**{k: v for k, v in options.items() if k in _GEOMETRY_OPTIONS}), location_box


def _check_mask_sizes(loaded: LoadedRecord) -> None:
    """Every mask must match the image (or, if the image size is unknown, each other)."""
    record = loaded.record
    media = loaded.media[0] if loaded.media else None
    expected = (media.height, media.width) if media and media.width and media.height else None
    for name, mask in sorted(loaded.masks.items()):
        expected = expected or mask.shape
        if mask.ndim != 2 or mask.shape != expected:
            raise Rejected(
                "mask_size_mismatch", record.primary_file, f"mask {name!r} is {mask.shape}, image is {expected} (H, W)"
            )


def _organ_facts(loaded: LoadedRecord, lesion_key: str | None, config: GeometryConfig) -> list[tuple[str, MaskFacts]]:
    """Facts of each organ mask (sorted by name); annotated organs without a mask are absent."""
    vocab = vocabulary()
    names = {n for n in loaded.masks if n != lesion_key and vocab.has("organs", n)}
    names |= set(loaded.facts.get("organs_annotated") or ())
    return [(n, mask_facts(loaded.masks[n], config) if n in loaded.masks else _ABSENT) for n in sorted(names)]


@converter(NAME, tasks=LESION_TASKS + ORGAN_TASKS, needs_masks=True)
def spatial(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample]:
    check_context("spatial", ctx, QUESTION_TYPES, _OPTIONS)
    config, location_box = _parse_options(ctx.options)
    _check_mask_sizes(loaded)
    record, vocab = loaded.record, vocabulary()
    samples: list[Sample] = []

    def common(lang: str, **extra: str) -> dict[str, str]:
        return {**image_words(loaded, lang), **extra}

    lesion_key = loaded.facts.get("lesion_mask")
    lesion_tasks = [t for t in ctx.tasks if t in LESION_TASKS]
    if lesion_key is not None and lesion_tasks:
        if lesion_key not in loaded.masks:
            raise KeyError(f"{record.uid}: facts name lesion mask {lesion_key!r}, masks are {sorted(loaded.masks)}")
        facts = mask_facts(loaded.masks[lesion_key], config)
        if facts.empty and loaded.facts.get("lesion_expected"):
            detail = f"lesion mask {lesion_key!r} holds only speckle ({facts.speckle} component(s) below the minimum)"
            raise Rejected("empty_mask_for_lesion_label", record.primary_file, detail)
        for task in lesion_tasks:
            for lang in ctx.langs:
                book = _Phrasebook(task, lang, rng_for(ctx.seed, record.uid, task, lang), common(lang))
                qa = _lesion_qa(book, facts, location_box)
                if qa is not None:
                    samples.append(to_sample(loaded, converter=NAME, task=task, lang=lang,
                                             question_type=QUESTION_TYPES[task], qa=qa, mask_files=True))

    organ_tasks = [t for t in ctx.tasks if t in ORGAN_TASKS]
    organs = _organ_facts(loaded, lesion_key, config) if organ_tasks else []
    for task in organ_tasks:
        for organ, facts in organs:
            for lang in ctx.langs:
                words = common(lang, organ=vocab.term("organs", organ, lang))
                book = _Phrasebook(task, lang, rng_for(ctx.seed, record.uid, task, lang, organ), words)
                qa = _organ_qa(book, facts)
                if qa is not None:
                    samples.append(to_sample(loaded, converter=NAME, task=task, lang=lang,
                                             question_type=QUESTION_TYPES[task], qa=qa,
                                             key_task=f"{task}_{organ}", mask_files=True))
    return samples

