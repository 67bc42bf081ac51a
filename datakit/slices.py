"""Converting one slice of a plan: load records, run converters, spill samples to disk.

A slice task writes ``slice-NNNNN.tar`` (every sample's parts, in order) and, last and
atomically, ``slice-NNNNN.json`` (record rows + sample summaries with their byte offsets in
the tar). The JSON is the completion marker: a rerun skips slices that have one, so a killed
build resumes where it stopped. The same code runs in a local process pool and in a SLURM
array task.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datakit import registry
from datakit.converters.base import ConvertContext
from datakit.errors import Rejected
from datakit.plan import BuildPlan
from datakit.record import RawRecord
from datakit.sample import Sample, canonical_json
from datakit.shard_writer import AtomicTarWriter


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


def convert_record(plan: BuildPlan, readers: _Readers, record: RawRecord) -> list[Sample]:
    """All samples of one record, or ``Rejected`` if it cannot be converted."""
    spec = plan.recipe.sources[plan.source_index(record.source)]
    loaded = readers.get(record.source).load(record)
    samples: list[Sample] = []
    for step in spec.convert:
        conv = registry.get_converter(step.converter)
        ctx = ConvertContext(seed=plan.seed, tasks=step.tasks, langs=plan.recipe.langs, options=step.options)
        samples.extend(conv.fn(loaded, ctx))
    return samples


def run_slice(plan: BuildPlan, work: Path, index: int) -> Path:
    """Convert slice ``index`` of ``plan`` into ``work/slices/``; returns the result path."""
    tar_path, result_path = slice_paths(work, index)
    readers = _Readers(plan, {})
    record_rows: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    with AtomicTarWriter(tar_path) as tar:
        for record in plan.slice_records(index):
            try:
                samples = convert_record(plan, readers, record)
            except Rejected as rej:
                record_rows.append(_record_row(record, "rejected", rej.reason, rej.path, rej.detail, 0))
                continue
            if not samples:
                record_rows.append(
                    _record_row(record, "rejected", "no_samples", record.primary_file,
                                "no converter task applies to this record", 0)
                )
                continue
            record_rows.append(_record_row(record, "emitted", "", record.primary_file, "", len(samples)))
            for sample in samples:
                parts = sample.parts()
                tar.add_sample(sample.key, parts)
                summaries.append(_summary(sample, record, [p for p, _ in parts], tar.offsets))
    doc = {"fingerprint": plan.fingerprint, "slice": index, "records": record_rows, "samples": summaries}
    tmp = result_path.with_name(f"{result_path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(canonical_json(doc))
    os.replace(tmp, result_path)
    return result_path


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


def _summary(sample: Sample, record: RawRecord, parts: list[str],
             offsets: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """What the merge needs without reading the tar: identity, dedup text, and part offsets."""
    question = " ".join(t["value"] for t in sample.conversation if t["from"] == "human")
    return {
        "key": sample.key,
        "group": sample.group,
        "source": sample.source,
        "record_uid": record.uid,
        "task": sample.task,
        "lang": sample.lang,
        "question_type": sample.question_type,
        "text": f"{question}\n{sample.answer}",
        "media_sha256": [m.sha256 for m in sample.media],
        "parts": [[part, *offsets[f"{sample.key}.{part}"]] for part in parts],
    }
