"""Merging slices into the release: split, order, write shards, prepare, account.

Runs once per build (locally after the pool, or as the SLURM merge task). Everything here is a
function of the slice results and the recipe seed: split keys go to train or val by
``datakit.splits`` (a patient's, case's or paper's records together, EN/ZH twins and all tasks of
a record together, the releases' held-out splits in val), samples are ordered by a seeded hash
of their key, and shards are cut every ``samples_per_shard`` samples.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datakit import energon_format
from datakit.balance import BalanceConfig, BalanceReport, apply_caps, write_balance_report
from datakit.conversation import Chat, assemble
from datakit.dedup.config import DedupConfig
from datakit.dedup.decontam import Registry, decontam_registry, decontam_stages
from datakit.dedup.image_hash import ImageSignature
from datakit.dedup.report import format_report, write_report
from datakit.dedup.stages import DedupResult, deduplicate
from datakit.dedup.summary import SampleSummary
from datakit.manifest import Manifest, accounting_line, check_accounting
from datakit.plan import BuildPlan
from datakit.progress import Progress
from datakit.release import release_checksums
from datakit.sample import INTERLEAVED, INTERLEAVED_SCHEMA, SCHEMA, canonical_json, conversation_doc
from datakit.seeding import derive_seed
from datakit.splits import assign_split, assign_splits  # noqa: F401  (assign_split: public here too)
from datakit.shard_writer import AtomicTarWriter
from datakit.slices import INTERNAL_ERROR, slice_paths


@dataclass(slots=True)
class BuildResult:
    out: Path
    summary: dict[str, Any]
    checksums: dict[str, str] = field(default_factory=dict)
    release_sha256: str = ""


def merge(plan: BuildPlan, work: Path, out: Path, extra: dict[str, Any] | None = None,
          progress: Progress | None = None) -> BuildResult:
    progress = progress or Progress.quiet()
    manifest = Manifest()
    for j in plan.rejections:
        manifest.add(kind="record", id=j.manifest_id, source=j.source, record_uid=j.uid, path=j.path,
                     status=j.status, reason=j.reason, detail=j.detail, n_samples=0)
    summaries: list[dict[str, Any]] = []
    signatures: dict[str, Any] = {}
    n_drops = 0
    for index in range(plan.n_slices):
        tar_path, result_path = slice_paths(work, index)
        doc = json.loads(result_path.read_bytes())
        for row in doc["records"]:
            manifest.add(kind="record", **row)
        for s in doc["samples"]:
            s["slice_tar"] = str(tar_path)
            summaries.append(s)
        signatures.update((k, v) for k, v in doc["signatures"].items() if v is not None)
        for d in doc.get("drops", []):
            manifest.add(kind="sample", source=d["record_uid"].split(":", 1)[0], **d)
            n_drops += 1
    keys = Counter(s["key"] for s in summaries)
    if len(keys) != len(summaries):
        dup = next(k for k, c in keys.items() if c > 1)
        raise RuntimeError(f"two samples share the key {dup!r}: a converter bug")

    dedup_phase = progress("dedup", total=len(summaries), unit="sample")
    registry = decontam_registry(DedupConfig.from_recipe(plan.recipe.dedup), plan.decontam_dir)
    dedup = _deduplicate(plan, summaries, signatures, manifest, registry)
    dedup_phase.update(len(summaries))
    dedup_phase.close()
    gone = {r.key for r in dedup.drops}
    kept, balanced_out = apply_caps([s for s in summaries if s["key"] not in gone],
                                    BalanceConfig.from_recipe(plan.recipe.balance), plan.seed)
    for s in balanced_out:
        manifest.add(kind="sample", id=s["key"], source=s["source"], record_uid=s["record_uid"],
                     status="balanced_out", reason="balance_cap", detail=s["balanced_out"], task=s["task"],
                     lang=s["lang"], group=s["group"], stage="balance")
    splits = assign_splits(plan.seed, ((s["split_key"], s.get("official_split")) for s in kept),
                           plan.recipe.val_fraction)
    for s in kept:
        s["split"] = splits[s["split_key"]]
    chats = assemble(kept, plan.seed, plan.recipe.multi_turn)

    out.mkdir(parents=True, exist_ok=True)
    shard_paths: list[str] = []
    merge_phase = progress("merge", total=len(chats), unit="sample")
    for split in energon_format.SPLITS:
        ordered = sorted((c for c in chats if c.split == split),
                         key=lambda c: (derive_seed(plan.seed, "order", c.key), c.key))
        per = plan.recipe.samples_per_shard
        for n, start in enumerate(range(0, len(ordered), per)):
            rel = f"{split}/shard-{n:06d}.tar"
            _write_shard(out / rel, ordered[start : start + per])
            merge_phase.update(len(ordered[start : start + per]))
            shard_paths.append(rel)
            for chat in ordered[start : start + per]:
                for turn, s in enumerate(chat.members):
                    manifest.add(kind="sample", id=s["key"], source=s["source"], record_uid=s["record_uid"],
                                 status="emitted", task=s["task"], lang=s["lang"], group=s["group"],
                                 split=split, shard=rel, split_key=s["split_key"], conversation=chat.key,
                                 turn=turn)
    merge_phase.close()
    _remove_stale(out, set(shard_paths))
    balance = write_balance_report(
        BalanceReport.of(kept, Counter(len(c.members) for c in chats), balanced_out), out)
    energon_format.write_dataset_yaml(out, plan.recipe.name, _schema(plan, summaries))
    if shard_paths:
        prepare_phase = progress("prepare", total=len(shard_paths), unit="shard")
        energon_format.prepare(out, shard_paths)
        prepare_phase.update(len(shard_paths))
        prepare_phase.close()
    checksums, release = release_checksums(out)

    _settle_record_statuses(manifest)
    acc = check_accounting(manifest, records_discovered=len(plan.records) + len(plan.rejections),
                           samples_converted=len(summaries) + n_drops)
    summary = _summary(plan, manifest, acc)
    summary["dedup"] = write_report(dedup, out, registry=None)
    summary["balance"] = balance
    summary["bytes"] = release_bytes(plan, out, shard_paths)
    summary["balance_lines"] = balance_lines(balance, summary["bytes"])
    summary["dedup_lines"] = format_report(summary["dedup"])
    summary["decontam"] = registry.benchmark_set() if registry is not None else []
    summary.update(extra or {})
    manifest.write(out / "manifest.parquet")
    build_doc = {
        "recipe": plan.recipe.to_dict(),
        "seed": plan.seed,
        "decontam": {"benchmarks": summary["decontam"]},
        "summary": summary,
        "checksums": checksums,
        "release_sha256": release,
    }
    (out / "build.json").write_bytes(canonical_json(build_doc))
    return BuildResult(out=out, summary=summary, checksums=checksums, release_sha256=release)


def _schema(plan: BuildPlan, summaries: list[dict[str, Any]]) -> str:
    """The one sample kind of the build (VQA unless the samples are interleaved documents): an
    Energon dataset names one cooker, so a recipe mixing both kinds is refused."""
    kinds = sorted({s.get("schema", SCHEMA) for s in summaries}) or [SCHEMA]
    if len(kinds) > 1:
        raise RuntimeError(f"recipe {plan.recipe.name} mixes sample kinds {kinds}: build interleaved documents "
                           "and VQA samples as separate recipes and blend them (datakit blend)")
    return kinds[0]


def _deduplicate(plan: BuildPlan, summaries: list[dict[str, Any]], signatures: dict[str, Any],
                 manifest: Manifest, registry: Registry | None) -> DedupResult:
    """Decontamination, exact/near image and near text dedup across every source of the recipe;
    one manifest row per dropped sample (status, the kept key or benchmark file, stage, distance)."""
    cfg = DedupConfig.from_recipe(plan.recipe.dedup)
    with StoredMedia(summaries) as media:
        result = deduplicate(
            [SampleSummary.from_dict(s) for s in summaries],
            {k: ImageSignature.from_dict(v) for k, v in signatures.items()},
            cfg,
            source_priority=[s.source for s in plan.recipe.sources],
            stages=decontam_stages(cfg, registry),
            media=media.read,
        )
    by_key = {s["key"]: s for s in summaries}
    for r in result.drops:
        s = by_key[r.key]
        detail = f"{r.benchmark}: {r.matched_file}" if r.status == "contaminated" else ""
        manifest.add(kind="sample", id=r.key, source=s["source"], record_uid=s["record_uid"], status=r.status,
                     reason=r.stage, detail=detail, task=s["task"], lang=s["lang"], group=s["group"],
                     duplicate_of=r.duplicate_of, stage=r.stage, distance=float(r.distance))
    return result


class StoredMedia:
    """Stored media bytes by sha256, read back from the slice files (the pixel check of a
    near-duplicate candidate decodes its two images again; nothing else is held)."""

    def __init__(self, summaries: list[dict[str, Any]]) -> None:
        self._where: dict[str, tuple[str, int, int]] = {}
        for s in summaries:
            for sha, (_, offset, size) in zip(s["media_sha256"], s["parts"][1:]):
                self._where.setdefault(sha, (s["slice_tar"], offset, size))
        self._files: dict[str, Any] = {}

    def read(self, sha: str) -> bytes:
        path, offset, size = self._where[sha]
        fh = self._files.get(path) or self._files.setdefault(path, open(path, "rb"))
        fh.seek(offset)
        data = fh.read(size)
        if len(data) != size:
            raise OSError(f"{path}: short read of medium {sha[:12]}")
        return data

    def __enter__(self) -> "StoredMedia":
        return self

    def __exit__(self, *exc: object) -> None:
        for fh in self._files.values():
            fh.close()


def _settle_record_statuses(manifest: Manifest) -> None:
    """A record none of whose samples was emitted takes the status of its samples' drop
    (duplicate or contaminated), so the record-level invariant counts it once, correctly."""
    emitted, dropped = set(), {}
    for r in manifest.rows:
        if r["kind"] == "sample" and r.get("record_uid"):
            if r["status"] == "emitted":
                emitted.add(r["record_uid"])
            elif r["status"] in ("duplicate", "contaminated", "label_conflict", "balanced_out"):
                dropped.setdefault(r["record_uid"], r)
    for r in manifest.rows:
        uid = r.get("record_uid")
        if r["kind"] == "record" and r["status"] == "emitted" and uid in dropped and uid not in emitted:
            d = dropped[uid]
            r.update(status=d["status"], reason=d["stage"], duplicate_of=d.get("duplicate_of"),
                     detail=d.get("detail") or "", stage=d["stage"], distance=d.get("distance"))


def _write_shard(path: Path, chats: list[Chat]) -> None:
    """Each conversation's JSON (composed from its items' JSON in the slice files) and its
    media, read once from the first item's parts; an interleaved document is its own JSON."""
    handles: dict[str, Any] = {}

    def read(s: dict[str, Any], part: list[Any]) -> bytes:
        fh = handles.get(s["slice_tar"]) or handles.setdefault(s["slice_tar"], open(s["slice_tar"], "rb"))
        name, offset, size = part
        fh.seek(offset)
        data = fh.read(size)
        if len(data) != size:
            raise OSError(f"{s['slice_tar']}: short read for {s['key']}.{name}")
        return data

    try:
        with AtomicTarWriter(path) as tar:
            for chat in chats:
                first = chat.members[0]
                if first.get("schema") == INTERLEAVED_SCHEMA:
                    tar.add(f"{chat.key}.json", read(first, first["parts"][0]))
                else:
                    items = [{**json.loads(read(s, s["parts"][0])), "key": s["key"]} for s in chat.members]
                    tar.add(f"{chat.key}.json", canonical_json(conversation_doc(chat.key, items)))
                for part in first["parts"][1:]:
                    tar.add(f"{chat.key}.{part[0]}", read(first, part))
    finally:
        for fh in handles.values():
            fh.close()


def balance_lines(balance: dict[str, Any], sizes: dict[str, Any]) -> list[str]:
    """The build summary's lines on what the shards hold and what they cost."""
    ratio = sizes["shard_to_source"]
    if balance.get("question_type") and set(balance["question_type"]) == {INTERLEAVED}:
        held = f"samples: {balance['conversations']} interleaved documents"
    else:
        held = (f"samples: {balance['conversations']} conversations holding {balance['turns']} QA turns "
                f"(turns per conversation {balance['turns_per_conversation']}); yes/no share "
                f"{balance['yes_no_share']:.1%}; mcq letters {balance['mcq_answer_letters']}")
    lines = [held,
             f"bytes: shards {sizes['shard_bytes']:,} / sources {sizes['source_bytes']:,} = "
             + (f"{ratio:.2f}x" if ratio is not None else "n/a")]
    if balance["balanced_out"]:
        lines.append("balanced out: " + ", ".join(f"{k}: {v}" for k, v in balance["balanced_out"].items()))
    return lines


def release_bytes(plan: BuildPlan, out: Path, shard_paths: list[str]) -> dict[str, Any]:
    """Shard bytes against the bytes of the source files the build read (images, masks):
    what storing media once per conversation, as read, costs."""
    files = {p for r in plan.records for p in (*r.images, *r.masks)}
    source = sum(p.stat().st_size for p in files if p.is_file())
    shards = sum((out / rel).stat().st_size for rel in shard_paths)
    return {"source_bytes": source, "shard_bytes": shards,
            "shard_to_source": round(shards / source, 3) if source else None}


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Drop shards (and their energon index) left by an earlier build of a different size."""
    for split in energon_format.SPLITS:
        for p in sorted((out / split).glob("*.tar*")) if (out / split).exists() else []:
            rel = f"{split}/{p.name}"
            base = rel[: -len(".idx")] if rel.endswith(".tar.idx") else rel
            if base not in keep or ".tmp-" in p.name:
                p.unlink()


def _summary(plan: BuildPlan, manifest: Manifest, acc: dict[str, Any]) -> dict[str, Any]:
    per_source: dict[str, Counter] = defaultdict(Counter)
    per_task: Counter = Counter()
    per_lang: Counter = Counter()
    per_split: Counter = Counter()
    rejects: Counter = Counter()
    ignored: Counter = Counter()
    internal_errors: list[str] = []
    for r in manifest.rows:
        if r["kind"] == "record":
            per_source[r["source"]][f"records_{r['status']}"] += 1
            if r["status"] == "rejected":
                rejects[f"{r['source']}:{r['reason']}"] += 1
            elif r["status"] == "ignored":
                ignored[f"{r['source']}:{r['reason']}"] += 1
            if r["reason"] == INTERNAL_ERROR:
                internal_errors.append(f"{r['record_uid']} ({r['path']}): {r['detail']}")
        elif r["status"] == "emitted":
            per_source[r["source"]]["samples"] += 1
            per_task[r["task"]] += 1
            per_lang[r["lang"]] += 1
            per_split[r["split"]] += 1
    return {
        "recipe": plan.recipe.name,
        "sources": {k: dict(sorted(v.items())) for k, v in sorted(per_source.items())},
        "missing_sources": plan.missing,
        "tasks": dict(sorted(per_task.items())),
        "langs": dict(sorted(per_lang.items())),
        "splits": dict(sorted(per_split.items())),
        "rejects": dict(sorted(rejects.items())),
        "ignored": dict(sorted(ignored.items())),
        "internal_errors": {"count": len(internal_errors), "examples": sorted(internal_errors)[:5]},
        "accounting": acc,
        "accounting_line": accounting_line(acc),
    }

