"""Release checksums and lock files: what a released shard set holds, and checking a build.

The release checksum covers the tars, ``.nv-meta/dataset.yaml`` and ``.nv-meta/split.yaml``;
energon's index files (``.tar.idx``, ``index.sqlite``, ``.info.json``) are derived from them and
carry versions/UUIDs, so they are left out. ``shards/<recipe>.lock`` pins the per-file checksums,
the sample keys of each split and the decontamination benchmark set (names, content hashes) the
build was checked against; ``datakit verify`` compares a build with it and names a different set
as such.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from datakit.shard_writer import iter_samples

RELEASE_META = (".nv-meta/dataset.yaml", ".nv-meta/split.yaml")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def release_files(out: Path) -> list[str]:
    """Shard tars (``<split>/*.tar``, or a GRPO draw's top-level ``grpo-*.tar``) and the meta files."""
    tars = sorted(p.relative_to(out).as_posix() for p in [*out.glob("*.tar"), *out.glob("*/*.tar")])
    return tars + [m for m in RELEASE_META if (out / m).exists()]


def release_checksums(out: Path) -> tuple[dict[str, str], str]:
    sums = {rel: _sha256(out / rel) for rel in release_files(out)}
    release = hashlib.sha256("".join(f"{sha}  {rel}\n" for rel, sha in sums.items()).encode()).hexdigest()
    return sums, release


def sample_keys(out: Path) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for rel in release_files(out):
        if rel.endswith(".tar"):
            split = rel.split("/", 1)[0] if "/" in rel else "train"  # a GRPO draw is one train split
            keys.setdefault(split, []).extend(k for k, _ in iter_samples(out / rel))
    return {k: sorted(v) for k, v in sorted(keys.items())}


def decontam_set(out: Path) -> list[dict[str, Any]]:
    """The benchmark set a build was decontaminated against (names, content hashes), from build.json."""
    try:
        doc = json.loads((out / "build.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return list((doc.get("decontam") or {}).get("benchmarks", []))


def make_lock(out: Path, recipe: str, seed: int) -> dict[str, Any]:
    sums, release = release_checksums(out)
    return {"recipe": recipe, "seed": seed, "release_sha256": release, "files": sums, "samples": sample_keys(out),
            "decontam": decontam_set(out)}


def write_lock(path: Path, lock: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(lock, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def compare_with_lock(out: Path, lock_path: Path) -> list[str]:
    """Differences between a build folder and a lock file; empty when they agree."""
    lock = json.loads(lock_path.read_text(encoding="utf-8"))
    if not out.exists():
        return [f"build folder {out} does not exist"]
    current = make_lock(out, lock["recipe"], lock["seed"])
    problems = []
    if "decontam" in lock and lock["decontam"] != current["decontam"]:
        problems.append(f"decontamination benchmark set differs: lock {_describe(lock['decontam'])}, "
                        f"build {_describe(current['decontam'])} (the registry this build read holds other "
                        f"benchmarks; see datakit decontam list)")
    for rel in sorted(set(lock["files"]) | set(current["files"])):
        a, b = lock["files"].get(rel), current["files"].get(rel)
        if a is None:
            problems.append(f"unexpected file {rel}")
        elif b is None:
            problems.append(f"missing file {rel}")
        elif a != b:
            problems.append(f"checksum differs: {rel} (lock {a[:12]}, build {b[:12]})")
    for split in sorted(set(lock["samples"]) | set(current["samples"])):
        want, have = set(lock["samples"].get(split, [])), set(current["samples"].get(split, []))
        for k in sorted(want - have)[:20]:
            problems.append(f"{split}: sample missing: {k}")
        for k in sorted(have - want)[:20]:
            problems.append(f"{split}: unexpected sample: {k}")
    if current["release_sha256"] != lock["release_sha256"]:
        problems.append(f"release checksum differs (lock {lock['release_sha256'][:12]}, build {current['release_sha256'][:12]})")
    return problems


def _describe(benchmarks: list[dict[str, Any]]) -> str:
    return "[" + ", ".join(f"{b['name']} {b['sha256'][:12]}" for b in benchmarks) + "]" if benchmarks else "[none]"
