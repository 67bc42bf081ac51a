"""Converting one slice of a plan: load records, run converters, spill samples to disk.

A slice task writes ``slice-NNNNN.tar`` (every sample's parts, in order) and, last and
atomically, ``slice-NNNNN.json`` (record rows + sample summaries with their byte offsets in
the tar). The JSON is the completion marker: a rerun skips slices that have one, so a killed
build resumes where it stopped. The same code runs in a local process pool and in a SLURM
array task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datakit import registry
from datakit.converters.base import SKIPPED, SKIPPED_LLM, ConvertContext, ConverterSpec, Missing
from datakit.errors import Rejected
from datakit.llm.runner import LLMRunner
from datakit.plan import BuildPlan
from datakit.dedup.image_hash import signature
from datakit.media import decode_image
from datakit.record import LoadedRecord, Media, RawRecord
from datakit.sample import InterleavedSample, Sample, canonical_json
from datakit.shard_writer import AtomicTarWriter

INTERNAL_ERROR = "internal_error"  # an unexpected exception while reading or converting one record

def slice_paths(work: Path, index: int) -> tuple[Path, Path]:
    stem = work / "slices" / f"slice-{index:05d}"
    return stem.with_suffix(".tar"), stem.with_suffix(".json")


def slice_done(work: Path, index: int, fingerprint: str) -> bool:
    _, result = slice_paths(work, index)
    if not result.exists():
        return False
    try:
        return json.loads(result.read_bytes()).get("fingerprint") == fingerprint
    except (OSError, ValueError):
        return False


@dataclass(slots=True)
class _Readers:
    plan: BuildPlan
    cache: dict[str, Any]

    def get(self, source: str):
        if source not in self.cache:
            spec = self.plan.recipe.sources[self.plan.source_index(source)]
            root = self.plan.sources_dir / spec.path
            self.cache[source] = registry.get_source(source)(root, **spec.options)
        return self.cache[source]


def _ctx(plan: BuildPlan, step) -> ConvertContext:
    return ConvertContext(seed=plan.seed, tasks=step.tasks, langs=plan.recipe.langs, options=step.options)


def asks_llm(plan: BuildPlan, loaded: LoadedRecord) -> bool:
    """Whether any conversion step of the record may ask an LLM: it names a request in its first
    round, or it builds on the samples of earlier steps (``ctx.earlier``), which only converting
    tells."""
    spec = plan.recipe.sources[plan.source_index(loaded.record.source)]
    for step in spec.convert:
        conv = registry.get_converter(step.converter)
        if conv.requests is not None and (conv.uses_earlier or conv.requests(loaded, _ctx(plan, step))):
            return True
    return False


Converted = tuple[list[Sample], list[tuple[str, Missing]]]  # samples, (converter, missing sample)


def convert_records(plan: BuildPlan, loaded: list[LoadedRecord], runner: LLMRunner,
                    strict: bool = False) -> list[Converted | Rejected]:
    """Every conversion step of each record (records of one source), through the runner: the
    steps that ask an LLM get their answers first. Per record: samples in step order and the
    planned samples it could not make, or the ``Rejected`` that stopped it. A step that reads
    masks skips a record read without them (``masks: optional``): its tasks are ``skipped``. An
    unexpected exception on one record is that record's ``internal_error`` (``strict``: raised)."""
    if not loaded:
        return []
    spec = plan.recipe.sources[plan.source_index(loaded[0].record.source)]
    out: list[Converted | Rejected] = [([], []) for _ in loaded]
    for step in spec.convert:
        conv = registry.get_converter(step.converter)
        ctx = _ctx(plan, step)
        live = []
        for i, o in enumerate(out):
            if isinstance(o, Rejected):
                continue
            absent = loaded[i].facts.get("masks_absent")
            if conv.needs_masks and absent:
                o[1].extend((step.converter, Missing(task=task, lang=lang, status=SKIPPED, reason="no_mask",
                                                     detail=str(absent)))
                            for task in step.tasks for lang in ctx.langs)
                continue
            live.append(i)
        guarded = conv if strict else _guarded(conv)
        results = runner.convert(guarded, [(loaded[i], dataclasses.replace(ctx, earlier=tuple(out[i][0])))
                                           for i in live])
        for i, result in zip(live, results):
            if isinstance(result, Rejected):
                out[i] = result
                continue
            samples, missing = out[i]  # type: ignore[misc]
            samples += [x for x in result if isinstance(x, (Sample, InterleavedSample))]
            missing += [(step.converter, x) for x in result if isinstance(x, Missing)]
    return out


def _guarded(conv: ConverterSpec) -> ConverterSpec:
    """``conv`` whose unexpected exception on one record becomes that record's ``Rejected``
    (reason ``internal_error``, the exception's type and message), so the others go on."""

    def guard(fn):
        def run(loaded: LoadedRecord, ctx: ConvertContext):
            try:
                return fn(loaded, ctx)
            except Rejected:
                raise
            except Exception as e:
                raise Rejected(INTERNAL_ERROR, loaded.record.primary_file, f"{type(e).__name__}: {e}") from e
        return run

    return dataclasses.replace(conv, fn=guard(conv.fn), requests=guard(conv.requests) if conv.requests else None)


def run_slice(plan: BuildPlan, work: Path, index: int, llm: LLMRunner | None = None, *,
              strict: bool = False) -> Path:
    """Convert slice ``index`` of ``plan`` into ``work/slices/``; returns the result path.

    ``llm`` is the build's ``LLMRunner`` (None: no endpoint and no cache, every LLM-derived
    sample is ``skipped_llm``). A record whose converters ask an LLM waits until the end of the
    slice, where all such records are converted together, so the client's threads give the
    concurrency; the others are converted and written as they are read.

    One record never stops the build: bad input is ``Rejected``, and any other exception while
    reading or converting a record becomes a ``rejected`` row with reason ``internal_error``
    (exception type and message), unless ``strict`` (for developers: the first one is raised).
    """
    runner = llm if llm is not None else LLMRunner(None)
    tar_path, result_path = slice_paths(work, index)
    readers = _Readers(plan, {})
    record_rows: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    drops: list[dict[str, Any]] = []
    waiting: dict[str, list[LoadedRecord]] = {}  # by source: records whose converters ask an LLM
    signatures: dict[str, Any] = {}  # media sha256 -> dedup signature, each image hashed once
    media_at: dict[str, tuple[int, int]] = {}  # media sha256 -> (offset, size) in this slice's tar
    with AtomicTarWriter(tar_path) as tar:

        def sign(m: Media) -> None:
            if m.sha256 not in signatures:
                signatures[m.sha256] = image_signature(m)

        def finish(loaded: LoadedRecord, result: Converted | Rejected) -> None:
            record = loaded.record
            if isinstance(result, Rejected):
                record_rows.append(_record_row(record, "rejected", result.reason, result.path, result.detail, 0))
                return
            samples, missing = result
            record_drops = [_drop_row(record, converter, m) for converter, m in missing]
            drops.extend(record_drops)
            if samples:
                record_rows.append(_record_row(record, "emitted", "", record.primary_file, "", len(samples)))
            elif record_drops:
                first, statuses = record_drops[0], {d["status"] for d in record_drops}
                if statuses == {SKIPPED}:  # mask tasks of a record read without masks, nothing else
                    record_rows.append(_record_row(record, SKIPPED, first["reason"], record.primary_file,
                                                   first["detail"], 0))
                else:
                    status = SKIPPED_LLM if statuses <= {SKIPPED, SKIPPED_LLM} else "rejected"
                    record_rows.append(_record_row(record, status, first["reason"], record.primary_file,
                                                   "every planned sample needed an LLM answer it did not get", 0))
            else:
                record_rows.append(_record_row(record, "rejected", "no_samples", record.primary_file,
                                               "no converter task applies to this record", 0))
            for sample in samples:
                for m in sample.media:  # media made by a converter (slices, frames): signed here
                    sign(m)
                summaries.append(_summary(sample, record, _spill(tar, sample, media_at), loaded.facts.get("label")))

        for record in plan.slice_records(index):
            try:
                loaded = readers.get(record.source).load(record)
                for m in loaded.media:  # signed from the pixels of the one decode at read time,
                    sign(m)             # which are then let go (a slice may hold many records)
                    m.release_pixels()
                waits = asks_llm(plan, loaded)
            except Rejected as rej:
                record_rows.append(_record_row(record, "rejected", rej.reason, rej.path, rej.detail, 0))
                continue
            except Exception as e:
                if strict:
                    raise
                record_rows.append(_record_row(record, "rejected", INTERNAL_ERROR, record.primary_file,
                                               f"{type(e).__name__}: {e}", 0))
                continue
            if waits:
                waiting.setdefault(record.source, []).append(loaded)
            else:
                finish(loaded, convert_records(plan, [loaded], runner, strict)[0])
        for batch in waiting.values():
            for loaded, result in zip(batch, convert_records(plan, batch, runner, strict)):
                finish(loaded, result)
    doc = {"fingerprint": plan.fingerprint, "slice": index, "records": record_rows, "samples": summaries,
           "drops": drops, "signatures": signatures}
    tmp = result_path.with_name(f"{result_path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(canonical_json(doc))
    os.replace(tmp, result_path)
    return result_path


def image_signature(media: Media) -> dict[str, Any] | None:
    """The dedup signature of a stored image (None for a video clip: images only are compared).
    An image read from a file carries its decoded pixels, which equal its stored bytes decoded
    (as read, or a lossless PNG of them), so it is not decoded a second time."""
    if media.ext not in ("png", "jpg"):
        return None
    return signature(stored_pixels(media)).to_dict()


def stored_pixels(media: Media):
    """A stored image's pixels: those of the read-time decode when still held, else its bytes
    decoded (media a converter made, or read back by the merge's pixel check)."""
    return media.pixels if media.pixels is not None else decode_image(media.data, media.sha256)


def _drop_row(record: RawRecord, converter: str, m: Missing) -> dict[str, Any]:
    """A planned sample that was not made: one manifest row of kind ``sample``."""
    return {"id": f"{record.uid}#{converter}/{m.slot or m.task}/{m.lang}", "record_uid": record.uid,
            "group": record.uid, "path": record.primary_file, "task": m.task, "lang": m.lang, "status": m.status,
            "reason": m.reason, "detail": m.detail}


def _record_row(record: RawRecord, status: str, reason: str, path: str | None, detail: str, n: int) -> dict[str, Any]:
    return {
        "id": record.uid,
        "source": record.source,
        "record_uid": record.uid,
        "path": path or record.primary_file,
        "status": status,
        "reason": reason,
        "detail": detail,
        "n_samples": n,
    }


def claim_of(sample: Sample | InterleavedSample) -> str | None:
    """The closed answer a near duplicate must share to be dropped (``dedup.stages``): the
    correct option's text of a multiple choice, the word of a yes/no question; None otherwise
    (open and free-text answers differ in wording between records by design)."""
    if sample.question_type == "yes_no":
        return sample.answer
    if sample.question_type == "mcq" and sample.options:
        letter = sample.answer.strip()[:1].upper()
        index = ord(letter) - ord("A") if letter else -1
        return sample.options[index] if 0 <= index < len(sample.options) else sample.answer
    return None


def slot_of(sample: Sample | InterleavedSample, record: RawRecord) -> str:
    """The sample's place within its record, the same across records: its key after the record
    part (``organ_presence_liver-en``), so claims are compared like for like."""
    digest = hashlib.sha1(record.record_id.encode("utf-8")).hexdigest()[:8]
    return sample.key.split(f"-{digest}-", 1)[-1]


def _spill(tar: AtomicTarWriter, sample: Sample | InterleavedSample, media_at: dict[str, tuple[int, int]]) -> list[list[Any]]:
    """Write a sample's JSON, and each medium the slice has not stored yet (a record's samples
    share its media: stored once); returns [part, offset, size] of every part, JSON first."""
    parts = sample.parts()
    tar.add(f"{sample.key}.json", parts[0][1])
    out: list[list[Any]] = [["json", *tar.offsets[f"{sample.key}.json"]]]
    for (name, data), medium in zip(parts[1:], sample.media):
        if medium.sha256 not in media_at:
            tar.add(f"{sample.key}.{name}", data)
            media_at[medium.sha256] = tar.offsets[f"{sample.key}.{name}"]
        out.append([name, *media_at[medium.sha256]])
    return out


def _summary(sample: Sample | InterleavedSample, record: RawRecord, parts: list[list[Any]],
             label: Any = None) -> dict[str, Any]:
    """What the merge needs without reading the tar: identity, dedup text, and part offsets.
    A document (interleaved) is compared by its words and names its schema; a released
    conversation of several question/answer pairs says how many (``pairs``)."""
    if isinstance(sample, InterleavedSample):
        text, extra = sample.plain_text(), {"schema": sample.schema}
    else:
        question = " ".join(t["value"] for t in sample.conversation if t["from"] == "human")
        text, pairs = f"{question}\n{sample.answer}", len(sample.conversation) // 2
        extra = {"pairs": pairs} if pairs > 1 else {}
    return {
        "modality": sample.modality,
        "label": None if label is None else str(label),
        "slot": slot_of(sample, record),
        "claim": claim_of(sample),
        "converter": sample.provenance.get("converter"),
        "mcq_letter": sample.answer.strip()[:1].upper() if sample.question_type == "mcq" else None,
        "key": sample.key,
        "group": sample.group,
        "split_key": f"{record.source}:{record.split_key}" if record.split_key else sample.group,
        "official_split": record.official_split,
        "source": sample.source,
        "record_uid": record.uid,
        "task": sample.task,
        "lang": sample.lang,
        "question_type": sample.question_type,
        "text": text,
        "media_sha256": [m.sha256 for m in sample.media],
        "parts": parts,
        **extra,
    }
