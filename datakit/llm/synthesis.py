"""LLM answers -> bilingual ``Sample``s: label enrichment, video multiple choice, and the
chain-of-thought of multiple-choice samples (``datakit.llm.cot``).

Every (task, language) sample a record is meant to give ends as exactly one of: an emitted
``Sample`` (provenance carries the LLM cache keys), or a ``Drop`` that the build writes as a
manifest row: ``rejected`` (the answer failed validation; final, the same answer is cached) or
``skipped_llm`` (no answer: offline with a cold cache, budget spent, endpoint failing; a later
build with an endpoint can fill it). Nothing here raises for bad LLM output.

Chinese samples are the English answer translated by the ``translate_zh`` task and validated
again; both languages share the record's ``group``. Option order is seeded per record, so the
position of the correct option does not follow the model's habits.

The LLM steps run in one process (threads give the concurrency, one ``LLMClient`` holds the
build's budget): ``synthesize_many`` answers records concurrently and yields outcomes in input
order, so the output does not depend on which answer came back first.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from scipy import ndimage

from datakit.converters.base import ConvertContext
from datakit.llm.client import LLMClient
from datakit.llm.request import ChatRequest, ImagePart
from datakit.llm.tasks import (
    LABEL_ENRICHMENT, VIDEO_MCQ, TaskSpec, label_enrichment_request, translation_request,
    video_mcq_request,
)
from datakit.llm.validate import ValidationStats, check_video_mcq, validate
from datakit.record import LoadedRecord, Media
from datakit.registry import converter
from datakit.sample import IMAGE_TOKEN, Sample, sample_key
from datakit.seeding import rng_for

CONVERTER = "llm_enrich"
LLM_TASKS = ("enriched_qa", "video_mcq", "cot_mcq")
REJECTED = "rejected"
SKIPPED_LLM = "skipped_llm"

_LETTERS = "ABCD"
_ANSWER_PREFIX = {"en": "Answer: ", "zh": "答案："}
_MCQ_INSTRUCTION = {
    "en": "Answer with the option's letter from the given choices directly.",
    "zh": "请直接回答所给选项的字母。",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Drop:
    """A planned sample that was not emitted, and why (one manifest row)."""

    uid: str
    source_file: str
    task: str
    lang: str
    status: str  # REJECTED | SKIPPED_LLM
    reason: str
    detail: str = ""
    llm_cache_key: str | None = None

    def manifest_row(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "path": self.source_file, "converter": CONVERTER, "task": self.task,
            "lang": self.lang, "status": self.status, "reason": self.reason, "detail": self.detail,
            "llm_cache_key": self.llm_cache_key,
        }


@dataclass(slots=True, kw_only=True)
class SynthesisOutcome:
    uid: str
    samples: list[Sample] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Translation:
    texts: list[str] | None  # None: see status and reason
    cache_key: str
    status: str = ""  # REJECTED | SKIPPED_LLM when there is no translation
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Asked:
    key: str
    parsed: Any = None  # the validated answer; None when dropped
    status: str = ""
    reason: str = ""
    detail: str = ""


def lesion_facts(loaded: LoadedRecord) -> list[str]:
    """Facts for the prompt: the reader's ``facts['lesion_facts']`` when it wrote them, else
    region count and area share of each mask (only what the mask itself supports)."""
    given = loaded.facts.get("lesion_facts")
    if given is not None:
        return [str(f) for f in given]
    out = []
    for name, mask in sorted(loaded.masks.items()):
        n = int(ndimage.label(mask)[1]) if mask.any() else 0
        share = 100.0 * float(np.count_nonzero(mask)) / max(mask.size, 1)
        out.append(f"{name}: {n} separate region(s), {share:.1f}% of the image area" if n else f"{name}: none")
    return out


class LLMSynthesizer:
    """Turns loaded records into LLM-derived samples through one ``LLMClient`` (one per build).

    ``facts`` gives the lesion facts a label prompt states; ``metadata_exclude`` names metadata
    fields never sent (identifiers and the like: they cost tokens and support no claim).
    """

    def __init__(
        self,
        client: LLMClient,
        *,
        facts: Callable[[LoadedRecord], list[str]] = lesion_facts,
        metadata_exclude: frozenset[str] = frozenset(),
    ) -> None:
        self.client = client
        self.validation = ValidationStats()
        self._facts = facts
        self._metadata_exclude = metadata_exclude
        self._lock = threading.Lock()  # worker threads count into the same counters
        self._emitted: Counter[str] = Counter()
        self._dropped: Counter[tuple[str, str]] = Counter()

    def synthesize(self, loaded: LoadedRecord, ctx: ConvertContext) -> SynthesisOutcome:
        out = SynthesisOutcome(uid=loaded.record.uid)
        for task in ctx.tasks:
            if task == "enriched_qa":
                self._enriched_qa(loaded, ctx, out)
            elif task == "video_mcq":
                self._video_mcq(loaded, ctx, out)
            elif task == "cot_mcq":
                from datakit.llm.cot import cot_samples

                cot_samples(self, loaded, ctx, out)
            else:
                raise KeyError(f"{CONVERTER} has no task {task!r}; known: {', '.join(LLM_TASKS)}")
        with self._lock:
            self._emitted.update(f"{s.task}/{s.lang}" for s in out.samples)
            self._dropped.update((d.status, d.reason) for d in out.drops)
        return out

    def synthesize_many(self, records: Iterable[LoadedRecord], ctx: ConvertContext) -> Iterator[SynthesisOutcome]:
        """``synthesize`` over many records at the client's concurrency, outcomes in input order."""
        workers = self.client.config.concurrency
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm")
        pending: deque[Future[SynthesisOutcome]] = deque()
        try:
            for loaded in records:
                pending.append(pool.submit(self.synthesize, loaded, ctx))
                if len(pending) >= 2 * workers:  # bounded: records are not all held in memory
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            emitted, dropped = dict(self._emitted), dict(self._dropped)
        drops: dict[str, dict[str, int]] = {}
        for (status, reason), n in sorted(dropped.items()):
            drops.setdefault(status, {})[reason] = n
        return {
            "llm": self.client.summary(),
            "validation": self.validation.summary(),
            "emitted": dict(sorted(emitted.items())),
            **{status: drops.get(status, {}) for status in (REJECTED, SKIPPED_LLM)},
        }

    # -- tasks ---------------------------------------------------------------------------

    def _enriched_qa(self, loaded: LoadedRecord, ctx: ConvertContext, out: SynthesisOutcome) -> None:
        rec, task = loaded.record, "enriched_qa"
        if not rec.label:
            return self._drop_all(loaded, ctx, out, task, _Asked("", status=REJECTED, reason="missing_label"))
        if not loaded.media:
            return self._drop_all(loaded, ctx, out, task, _Asked("", status=REJECTED, reason="missing_image"))
        image = loaded.media[0]
        try:
            part = ImagePart.from_ext(image.data, image.ext)
        except ValueError as e:
            asked = _Asked("", status=REJECTED, reason="unsupported_image_format", detail=str(e))
            return self._drop_all(loaded, ctx, out, task, asked)
        meta = {k: v for k, v in rec.meta.items() if k not in self._metadata_exclude}
        request = label_enrichment_request(
            part, modality=rec.modality, label=rec.label, lesion_facts=self._facts(loaded), metadata=meta
        )
        asked = self._ask(request, label=rec.label)
        if asked.parsed is None:
            return self._drop_all(loaded, ctx, out, task, asked)
        en = [asked.parsed["question"], asked.parsed["reasoning"], asked.parsed["answer"]]
        for lang, (texts, tkey) in self._languages(loaded, ctx, out, task, en).items():
            q, reasoning, a = texts
            conversation = [
                {"from": "human", "value": f"{IMAGE_TOKEN}\n{q}"},
                {"from": "gpt", "value": f"{reasoning}\n{_ANSWER_PREFIX[lang]}{a}"},
            ]
            out.samples.append(self._sample(loaded, LABEL_ENRICHMENT, task, lang, "open", conversation,
                                            a, [image], None, asked.key, tkey))

    def _video_mcq(self, loaded: LoadedRecord, ctx: ConvertContext, out: SynthesisOutcome) -> None:
        rec, task = loaded.record, "video_mcq"
        if not rec.text or not rec.text.strip():
            return self._drop_all(loaded, ctx, out, task, _Asked("", status=REJECTED, reason="missing_caption"))
        if not loaded.media:
            return self._drop_all(loaded, ctx, out, task, _Asked("", status=REJECTED, reason="missing_media"))
        asked = self._ask(video_mcq_request(rec.text))
        if asked.parsed is None:
            return self._drop_all(loaded, ctx, out, task, asked)
        options = list(asked.parsed["options"])
        rng_for(ctx.seed, rec.uid, task).shuffle(options)
        correct = next(i for i, o in enumerate(options) if o["correct"])
        en = [asked.parsed["question"], *(o["text"] for o in options)]
        n = len(loaded.media)
        frames = f"{IMAGE_TOKEN}\n" if n == 1 else "".join(f"Frame{i + 1}: {IMAGE_TOKEN}\n" for i in range(n))
        for lang, (texts, tkey) in self._languages(loaded, ctx, out, task, en, mcq_correct=correct).items():
            q, opts = texts[0], texts[1:]
            listed = "\n".join(f"{_LETTERS[i]}. {t}" for i, t in enumerate(opts))
            conversation = [
                {"from": "human", "value": f"{frames}{q}\n{listed}\n{_MCQ_INSTRUCTION[lang]}"},
                {"from": "gpt", "value": f"{_LETTERS[correct]}. {opts[correct]}"},
            ]
            out.samples.append(self._sample(loaded, VIDEO_MCQ, task, lang, "mcq", conversation,
                                            _LETTERS[correct], list(loaded.media), opts, asked.key, tkey))

    # -- shared steps ----------------------------------------------------------------------

    def _ask(self, request: ChatRequest, **context: Any) -> _Asked:
        answer = self.client.complete(request)
        if answer.answer is None:
            return _Asked(answer.cache_key, status=SKIPPED_LLM, reason=answer.reason, detail=answer.detail)
        verdict = self.validation.record(request.task, validate(request.task, answer.answer.parsed, **context))
        if not verdict.ok:
            return _Asked(answer.cache_key, status=REJECTED, reason=verdict.reason, detail=verdict.detail)
        return _Asked(answer.cache_key, parsed=answer.answer.parsed)

    def _languages(
        self, loaded: LoadedRecord, ctx: ConvertContext, out: SynthesisOutcome, task: str,
        en: list[str], mcq_correct: int | None = None,
    ) -> dict[str, tuple[list[str], str | None]]:
        """Texts per language to emit, with the translation's cache key; drops a failed ZH."""
        by_lang: dict[str, tuple[list[str], str | None]] = {}
        if "en" in ctx.langs:
            by_lang["en"] = (en, None)
        if "zh" in ctx.langs:
            asked = self._ask(translation_request(en), sources=en)
            zh = asked.parsed["translations"] if asked.parsed is not None else None
            if zh is not None and mcq_correct is not None:
                # Translation can merge two options or copy the answer into the question.
                options = [{"text": t, "correct": i == mcq_correct} for i, t in enumerate(zh[1:])]
                verdict = check_video_mcq({"question": zh[0], "options": options})
                self.validation.record("video_mcq_zh", verdict)
                if not verdict.ok:
                    asked, zh = _Asked(asked.key, status=REJECTED, reason=verdict.reason, detail=verdict.detail), None
            if zh is None:
                out.drops.append(self._drop(loaded, task, "zh", asked))
            else:
                by_lang["zh"] = (list(zh), asked.key)
        return by_lang

    def translate(self, texts: Sequence[str]) -> Translation:
        """Chinese versions of free text (captions, reports) for other converters, validated."""
        asked = self._ask(translation_request(list(texts)), sources=list(texts))
        zh = list(asked.parsed["translations"]) if asked.parsed is not None else None
        return Translation(texts=zh, cache_key=asked.key, status=asked.status, reason=asked.reason)

    def _sample(
        self, loaded: LoadedRecord, spec: TaskSpec, task: str, lang: str, qtype: str,
        conversation: list[dict[str, str]], answer: str, media: list[Media], options: list[str] | None,
        key: str, translation_key: str | None,
    ) -> Sample:
        rec = loaded.record
        provenance: dict[str, Any] = {
            "source_file": rec.primary_file,
            "sha256": loaded.file_sha256.get(rec.primary_file, ""),
            "converter": CONVERTER,
            "template": f"{spec.name}@{spec.version}",
            "llm_model": self.client.config.model,
            "llm_cache_key": key,
        }
        if translation_key is not None:
            provenance["llm_translation_cache_key"] = translation_key
        return Sample(
            key=sample_key(rec.source, rec.record_id, task, lang), source=rec.source, modality=rec.modality,
            task=task, lang=lang, group=rec.uid, question_type=qtype, conversation=conversation,
            answer=answer, media=media, options=options, provenance=provenance,
        )

    def _drop(self, loaded: LoadedRecord, task: str, lang: str, asked: _Asked) -> Drop:
        return Drop(
            uid=loaded.record.uid, source_file=loaded.record.primary_file, task=task, lang=lang,
            status=asked.status, reason=asked.reason, detail=asked.detail, llm_cache_key=asked.key or None,
        )

    def _drop_all(
        self, loaded: LoadedRecord, ctx: ConvertContext, out: SynthesisOutcome, task: str, asked: _Asked
    ) -> None:
        out.drops.extend(self._drop(loaded, task, lang, asked) for lang in ctx.langs)


@converter(CONVERTER, tasks=LLM_TASKS)
def llm_enrich(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample]:
    """Registry form: the build passes its ``LLMSynthesizer`` as ``ctx.options['llm']``; drops
    are counted in its summary (the build calls ``synthesize_many`` to get them as rows)."""
    synth = ctx.options.get("llm")
    if not isinstance(synth, LLMSynthesizer):
        raise TypeError(
            f"converter {CONVERTER} needs an LLMSynthesizer in ConvertContext.options['llm'] "
            f"(the build creates one from --llm-base-url/--llm-model), got {type(synth).__name__}"
        )
    return synth.synthesize(loaded, ctx).samples
