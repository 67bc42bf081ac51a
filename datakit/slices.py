"""Converting one slice of a plan: load records, run converters, spill samples to disk.

A slice task writes ``slice-NNNNN.tar`` (every sample's parts, in order) and, last and
atomically, ``slice-NNNNN.json`` (record rows + sample summaries with their byte offsets in
the tar). The JSON is the completion marker: a rerun skips slices that have one, so a killed
build resumes where it stopped. The same code runs in a local process pool and in a SLURM
array task.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datakit import registry
from datakit.converters.base import ConvertContext
from datakit.errors import Rejected
from datakit.plan import BuildPlan
from datakit.dedup.image_hash import signature
from datakit.media import decode_image
from datakit.record import LoadedRecord, Media, RawRecord
from datakit.sample import Sample, canonical_json
from datakit.shard_writer import AtomicTarWriter

LLM_CONVERTER = "llm_enrich"  # runs after the template converters, concurrently over a slice


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


def convert_record(plan: BuildPlan, readers: _Readers, record: RawRecord,
                   llm: Any = None) -> tuple[LoadedRecord, list[Sample], list[dict[str, Any]]]:
    """The loaded record, its template samples (every step but ``llm_enrich``) and drop rows for
    Chinese caption samples whose translation the LLM could not give; or ``Rejected``."""
    spec = plan.recipe.sources[plan.source_index(record.source)]
    loaded = readers.get(record.source).load(record)
    samples: list[Sample] = []
    drops: list[dict[str, Any]] = []
    for step in spec.convert:
        if step.converter == LLM_CONVERTER:
            continue
        ctx = _ctx(plan, step)
        if step.converter == "captions":
            drops.extend(_translate_captions(loaded, ctx, llm))
        samples.extend(registry.get_converter(step.converter).fn(loaded, ctx))
    return loaded, samples, drops


def _translate_captions(loaded: LoadedRecord, ctx: ConvertContext, llm: Any) -> list[dict[str, Any]]:
    """Ask the LLM for the Chinese captions this record's ZH samples need (cached, validated);
    the planned ZH samples become ``skipped_llm``/``rejected`` rows when no translation comes."""
    from datakit.converters.captions import translation_needs

    need, planned = translation_needs(loaded, ctx)
    if not need:
        return []
    rec = loaded.record
    status, reason = "skipped_llm", "offline"
    if llm is not None:
        kinds = sorted(need)
        tr = llm.translate([need[k] for k in kinds])
        if tr.texts is not None:
            loaded.facts["translations"] = {"zh": dict(zip(kinds, tr.texts))}
            return []
        status, reason = tr.status or "skipped_llm", tr.reason or "no_translation"
    return [_drop_row(rec.uid, rec.primary_file, task, lang, status, reason, "caption translation",
                      converter="captions") for task, lang in planned]


def run_slice(plan: BuildPlan, work: Path, index: int, llm: Any = None) -> Path:
    """Convert slice ``index`` of ``plan`` into ``work/slices/``; returns the result path.

    ``llm`` is the build's ``LLMSynthesizer`` (or None: offline with no cache, every LLM sample
    is then ``skipped_llm``). LLM steps run after the slice's template samples, over all its
    records at once, so the client's thread pool gives the concurrency.
    """
    tar_path, result_path = slice_paths(work, index)
    readers = _Readers(plan, {})
    record_rows: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    drops: list[dict[str, Any]] = []
    pending: list[tuple[RawRecord, LoadedRecord, list[Sample], list[dict[str, Any]]]] = []
    signatures: dict[str, Any] = {}  # media sha256 -> dedup signature, each image hashed once
    media_at: dict[str, tuple[int, int]] = {}  # media sha256 -> (offset, size) in this slice's tar
    with AtomicTarWriter(tar_path) as tar:

        def finish(record: RawRecord, samples: list[Sample], record_drops: list[dict[str, Any]],
                   label: Any = None) -> None:
            drops.extend(record_drops)
            if samples:
                record_rows.append(_record_row(record, "emitted", "", record.primary_file, "", len(samples)))
            elif record_drops:
                first = record_drops[0]
                status = "skipped_llm" if all(d["status"] == "skipped_llm" for d in record_drops) else "rejected"
                record_rows.append(_record_row(record, status, first["reason"], record.primary_file,
                                               "every LLM-derived sample was dropped", 0))
            else:
                record_rows.append(_record_row(record, "rejected", "no_samples", record.primary_file,
                                               "no converter task applies to this record", 0))
            for sample in samples:
                for m in sample.media:
                    if m.sha256 not in signatures:
                        signatures[m.sha256] = image_signature(m)
                summaries.append(_summary(sample, record, _spill(tar, sample, media_at), label))

        for record in plan.slice_records(index):
            try:
                loaded, samples, translation_drops = convert_record(plan, readers, record, llm)
            except Rejected as rej:
                record_rows.append(_record_row(record, "rejected", rej.reason, rej.path, rej.detail, 0))
                continue
            if _llm_step(plan, record.source) is None:
                finish(record, samples, translation_drops, loaded.facts.get("label"))
            else:
                pending.append((record, loaded, samples, translation_drops))
        labels = {rec.uid: loaded.facts.get("label") for rec, loaded, _, _ in pending}
        for record, samples, record_drops in _run_llm_steps(plan, pending, llm):
            finish(record, samples, record_drops, labels[record.uid])
    doc = {"fingerprint": plan.fingerprint, "slice": index, "records": record_rows, "samples": summaries,
           "drops": drops, "signatures": signatures}
    tmp = result_path.with_name(f"{result_path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(canonical_json(doc))
    os.replace(tmp, result_path)
    return result_path


def image_signature(media: Media) -> dict[str, Any] | None:
    """The dedup signature of a stored image (None for a video clip: images only are compared)."""
    if media.ext not in ("png", "jpg"):
        return None
    return signature(decode_image(media.data, media.sha256)).to_dict()


def _llm_step(plan: BuildPlan, source: str):
    spec = plan.recipe.sources[plan.source_index(source)]
    return next((s for s in spec.convert if s.converter == LLM_CONVERTER), None)


def _run_llm_steps(plan: BuildPlan, pending: list[tuple[RawRecord, LoadedRecord, list[Sample], list[dict[str, Any]]]],
                   llm: Any):
    """Yield (record, all samples, drop rows) in input order, LLM samples added per source."""
    by_source: dict[str, list[int]] = {}
    for i, (record, _, _, _) in enumerate(pending):
        by_source.setdefault(record.source, []).append(i)
    extra: dict[int, tuple[list[Sample], list[dict[str, Any]]]] = {}
    for source, idx in by_source.items():
        step = _llm_step(plan, source)
        ctx = _ctx(plan, step)
        if llm is None:
            for i in idx:
                rec = pending[i][0]
                extra[i] = ([], [_drop_row(rec.uid, rec.primary_file, t, lang, "skipped_llm", "offline", "")
                                 for t in step.tasks for lang in ctx.langs])
            continue
        for i, outcome in zip(idx, llm.synthesize_many([pending[i][1] for i in idx], ctx)):
            extra[i] = (outcome.samples, [
                _drop_row(d.uid, d.source_file, d.task, d.lang, d.status, d.reason, d.detail) for d in outcome.drops
            ])
    for i, (record, _, samples, earlier) in enumerate(pending):
        llm_samples, rows = extra[i]
        yield record, samples + llm_samples, earlier + rows


def _drop_row(uid: str, path: str, task: str, lang: str, status: str, reason: str, detail: str,
              converter: str = LLM_CONVERTER) -> dict[str, Any]:
    """A planned LLM-derived sample that was not emitted: one manifest row of kind ``sample``."""
    return {"id": f"{uid}#{converter}/{task}/{lang}", "record_uid": uid, "path": path, "task": task,
            "lang": lang, "status": status, "reason": reason, "detail": detail}


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


def claim_of(sample: Sample) -> str | None:
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


def slot_of(sample: Sample, record: RawRecord) -> str:
    """The sample's place within its record, the same across records: its key after the record
    part (``organ_presence_liver-en``), so claims are compared like for like."""
    digest = hashlib.sha1(record.record_id.encode("utf-8")).hexdigest()[:8]
    return sample.key.split(f"-{digest}-", 1)[-1]


def _spill(tar: AtomicTarWriter, sample: Sample, media_at: dict[str, tuple[int, int]]) -> list[list[Any]]:
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


def _summary(sample: Sample, record: RawRecord, parts: list[list[Any]], label: Any = None) -> dict[str, Any]:
    """What the merge needs without reading the tar: identity, dedup text, and part offsets."""
    question = " ".join(t["value"] for t in sample.conversation if t["from"] == "human")
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
        "text": f"{question}\n{sample.answer}",
        "media_sha256": [m.sha256 for m in sample.media],
        "parts": parts,
    }
