"""Decontamination: a registry of evaluation-benchmark images, and the stage that drops every
training record whose image matches one of them (exact or near), as ``contaminated``.

``datakit decontam add NAME DIR`` calls ``add_benchmark``: it signs the benchmark's images
(``benchmarks.py`` finds them) and writes ``NAME.parquet`` (one row per image: file, signature)
and ``NAME.json`` (what was registered, from where, what was skipped and why) into the registry
folder. That folder is, in order: the ``registry_dir`` argument (``--decontam DIR``),
``$DATAKIT_DECONTAM_DIR``, or ``datakit/decontam`` under the user's data folder
(``$XDG_DATA_HOME``, else ``~/.local/share``); never the current folder, so a build gives the
same bytes wherever it is run. Registries hold hashes of images that are not ours to
redistribute and are rebuilt from the benchmark folders. Writes are atomic, so a build never
reads half a registry. A build records the benchmark set it checked against (names and content
hashes, ``Registry.benchmark_set``) in ``build.json`` and its lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence


from datakit.dedup.benchmarks import ScanPlan, plan_scan, scan
from datakit.dedup.config import DedupConfig
from datakit.dedup.image_hash import SIGNATURE_VERSION, ImageSignature
from datakit.dedup.image_index import NearImageConfig, SignatureTable, near_pairs
from datakit.dedup.image_stages import record_images
from datakit.dedup.stages import DedupStage, Unit
from datakit.dedup.summary import DropRow

ENV_DIR = "DATAKIT_DECONTAM_DIR"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def registry_dir(path: str | Path | None = None) -> Path:
    """The registry folder: ``path``, else ``$DATAKIT_DECONTAM_DIR``, else the user's data folder."""
    if path is not None:
        return Path(path)
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "datakit" / "decontam"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def add_benchmark(
    name: str, folder: str | Path, *, registry: str | Path | None = None, split: str = "test", workers: int = 1,
    benchmark: str | None = None,
) -> dict[str, Any]:
    """Register (or re-register) benchmark ``name`` from ``folder``; returns its summary. With
    ``benchmark`` (a ``datakit.benchmarks`` name) the images are the ones its reader's items show
    the model (``split`` is then that reader's split name); without, the folder is scanned."""
    import polars as pl

    if not _NAME_RE.match(name):
        raise ValueError(f"benchmark name {name!r} must match [a-z0-9][a-z0-9_-]* (e.g. vqa_rad)")
    root = Path(folder)
    if benchmark is not None:
        from datakit.benchmarks.signing import benchmark_entries

        n_files, entries, skipped = benchmark_entries(benchmark, root, split, workers)
        plan = ScanPlan(f"benchmark:{benchmark}", split, [""] * n_files)
    else:
        plan = plan_scan(root, split)
        entries, skipped = scan(root, plan, workers)
    if not entries:
        hint = "; register every image with split='all'" if plan.split == "test" else ""
        raise ValueError(f"{root}: no readable image among {len(plan.files)} files (layout {plan.layout}, "
                         f"split {plan.split}){hint}")
    table = pl.DataFrame(
        {
            "file": [f for f, _ in entries],
            "exact": [s.exact for _, s in entries],
            "coarse": [s.coarse for _, s in entries],
            "fine": [s.fine for _, s in entries],
            "width": [s.width for _, s in entries],
            "height": [s.height for _, s in entries],
            "flat": [s.flat for _, s in entries],
        },
        schema={"file": pl.String, "exact": pl.String, "coarse": pl.Binary, "fine": pl.Binary,
                "width": pl.Int32, "height": pl.Int32, "flat": pl.Boolean},
    )
    summary = {
        "name": name,
        "folder": str(root.resolve()),
        "layout": plan.layout,
        "split": plan.split,
        "signature_version": SIGNATURE_VERSION,
        "files": len(plan.files),
        "images": len(entries),
        "distinct_images": table["exact"].n_unique(),
        "flat_images": int(table["flat"].sum()),
        "skipped": {reason: len(files) for reason, files in sorted(skipped.items())},
        "skipped_examples": {reason: files[:5] for reason, files in sorted(skipped.items())},
    }
    out = registry_dir(registry)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.parquet.tmp"
    table.write_parquet(tmp, statistics=False)
    os.replace(tmp, out / f"{name}.parquet")
    _atomic_write(out / f"{name}.json", (json.dumps(summary, indent=1, sort_keys=True) + "\n").encode())
    return summary


def list_benchmarks(registry: str | Path | None = None) -> list[dict[str, Any]]:
    folder = registry_dir(registry)
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def remove_benchmark(name: str, registry: str | Path | None = None) -> None:
    folder = registry_dir(registry)
    if not (folder / f"{name}.json").exists():
        raise FileNotFoundError(f"no benchmark {name!r} registered in {folder}")
    for ext in ("parquet", "json"):
        (folder / f"{name}.{ext}").unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class Registry:
    """All registered images of the chosen benchmarks: (benchmark, file) per row."""

    benchmarks: tuple[str, ...]
    owners: list[tuple[str, str]]
    signatures: list[ImageSignature]
    digests: dict[str, str] = field(default_factory=dict)  # benchmark -> sha256 of its rows

    def benchmark_set(self) -> list[dict[str, Any]]:
        """What a build was checked against: name, content hash and image count per benchmark."""
        counts: dict[str, int] = defaultdict(int)
        for name, _ in self.owners:
            counts[name] += 1
        return [{"name": n, "sha256": self.digests.get(n, ""), "images": counts[n]} for n in self.benchmarks]

    @classmethod
    def load(cls, names: Sequence[str] | str = "all", registry: str | Path | None = None) -> "Registry":
        import polars as pl

        folder = registry_dir(registry)
        known = [b["name"] for b in list_benchmarks(folder)]
        chosen = known if names == "all" else [] if names == "none" else list(names)
        owners, sigs, digests = [], [], {}
        for name in sorted(chosen):
            meta_path = folder / f"{name}.json"
            if not meta_path.exists():
                raise FileNotFoundError(f"benchmark {name!r} is not registered in {folder}; run: datakit decontam add {name} DIR")
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("signature_version") != SIGNATURE_VERSION:
                raise ValueError(
                    f"{meta_path}: signatures are {meta.get('signature_version')!r}, this datakit computes "
                    f"{SIGNATURE_VERSION!r}; re-register: datakit decontam add {name} {meta.get('folder')}"
                )
            digest = hashlib.sha256()
            for row in pl.read_parquet(folder / f"{name}.parquet").iter_rows(named=True):
                owners.append((name, row["file"]))
                sigs.append(ImageSignature(exact=row["exact"], coarse=row["coarse"], fine=row["fine"],
                                           width=row["width"], height=row["height"], flat=row["flat"]))
                digest.update(f"{row['file']}\t{row['exact']}\t{row['coarse'].hex()}\t{row['fine'].hex()}\t"
                              f"{row['width']}\t{row['height']}\t{int(row['flat'])}\n".encode())
            digests[name] = digest.hexdigest()
        return cls(tuple(sorted(chosen)), owners, sigs, digests)


class DecontamStage(DedupStage):
    """Drops every record with an image that matches a registered evaluation image: exactly
    (decoded pixels) or near (both perceptual thresholds). Flat images never match: a black
    slice is in every CT volume and says nothing about where the volume came from. The
    reported match is the closest, then (benchmark, file) order."""

    name, unit = "decontam", "record"

    def __init__(self, registry: Registry, cfg: NearImageConfig) -> None:
        super().__init__()
        self.registry, self.cfg = registry, cfg
        self._exact: dict[str, int] = {}
        for row in sorted(range(len(registry.owners)), key=lambda r: registry.owners[r]):
            self._exact.setdefault(registry.signatures[row].exact, row)
        self._near_rows = [r for r, s in enumerate(registry.signatures) if not s.flat]
        self._table = SignatureTable.of([registry.signatures[r] for r in self._near_rows])

    def match(self, units: list[Unit], signatures: Mapping[str, ImageSignature]) -> dict[int, tuple[int, float]]:
        """Unit rank -> (registry row, distance) of its closest registered image."""
        best: dict[int, tuple[float, tuple[str, str], int]] = {}
        train_rank, train_sigs = [], []
        for rank, u in enumerate(units):
            sigs = record_images(u, signatures)
            if not sigs:
                self.stats.skipped["no_image"] += 1
            for s in sigs:
                if s.flat:  # blank slices and padding frames are shared by unrelated volumes
                    self.stats.skipped["flat_image"] += 1
                    continue
                row = self._exact.get(s.exact)
                if row is not None:
                    self._offer(best, rank, 0.0, row)
                else:
                    train_rank.append(rank)
                    train_sigs.append(s)
        i, j, dist = near_pairs(SignatureTable.of(train_sigs), self._table, self.cfg)
        for a, b, d in zip(i.tolist(), j.tolist(), dist.tolist()):
            self._offer(best, train_rank[a], float(d), self._near_rows[b])
        return {rank: (row, d) for rank, (d, _, row) in best.items()}

    def _offer(self, best: dict[int, tuple[float, tuple[str, str], int]], rank: int, distance: float, row: int) -> None:
        cand = (distance, self.registry.owners[row], row)
        if rank not in best or cand < best[rank]:
            best[rank] = cand

    def run_units(self, units: list[Unit], signatures: Mapping[str, ImageSignature]) -> list[DropRow]:
        matches = self.match(units, signatures)
        rows = []
        for rank, (row, d) in sorted(matches.items()):
            bench, file = self.registry.owners[row]
            rows.extend(DropRow(key=s.key, status="contaminated", stage=self.name, duplicate_of=None, distance=d,
                                benchmark=bench, matched_file=file) for s in units[rank].members)
        self._account(units, rows)
        self.stats.clusters += len({self.registry.owners[row] for row, _ in matches.values()})
        return rows


def decontam_registry(cfg: DedupConfig, registry: str | Path | None = None) -> Registry | None:
    """The benchmarks a build checks against, from the recipe's ``dedup.decontam`` (None for
    ``"none"``); named benchmarks must exist."""
    return None if cfg.decontam == "none" else Registry.load(cfg.decontam, registry)


def decontam_stages(cfg: DedupConfig, registry: str | Path | Registry | None = None) -> list[DedupStage]:
    """The decontamination stage a build runs first, from the recipe's ``dedup.decontam``:
    none for ``"none"`` or for ``"all"`` with an empty registry; named benchmarks must exist."""
    reg = registry if isinstance(registry, Registry) else decontam_registry(cfg, registry)
    if reg is None or not reg.signatures:
        return []
    return [DecontamStage(reg, cfg.near_image or NearImageConfig())]


def contamination_report(rows: Sequence[DropRow], registry: Registry | None = None) -> dict[str, dict[str, Any]]:
    """Per benchmark: contaminated samples, distinct matched files, how many matched at distance
    0 (identical pixels or hashes) and above, examples; every loaded benchmark appears, clean
    ones with zeros."""
    out: dict[str, dict[str, Any]] = {}
    by_bench: dict[str, list[DropRow]] = defaultdict(list)
    for r in rows:
        if r.status == "contaminated" and r.benchmark is not None:
            by_bench[r.benchmark].append(r)
    for bench in sorted(set(by_bench) | set(registry.benchmarks if registry else ())):
        rs = sorted(by_bench.get(bench, []), key=lambda r: r.key)
        out[bench] = {
            "samples": len(rs),
            "matched_files": len({r.matched_file for r in rs}),
            "at_distance_0": sum(r.distance == 0 for r in rs),
            "near": sum(r.distance > 0 for r in rs),
            "examples": [{"key": r.key, "file": r.matched_file, "distance": r.distance} for r in rs[:5]],
        }
    return out
