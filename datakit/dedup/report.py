"""The closing dedup report: per stage what was kept and dropped, clusters, examples, and a plot
of duplicate distances (the numbers to look at before moving a threshold).

``write_report`` writes ``dedup_report.json`` and ``dedup_distances.png`` into a build's folder;
both are byte-stable for the same result (sorted keys, no timestamps, no PNG metadata).
``format_report`` gives the same facts as lines for the terminal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from datakit.dedup.decontam import Registry, contamination_report
from datakit.dedup.stages import DedupResult
from datakit.dedup.summary import DropRow, StageStats

_EXAMPLES = 5
_UNITS = {"near_image": "Hamming distance (bits of 64)", "decontam": "Hamming distance (bits of 64)",
          "near_text": "1 - estimated Jaccard similarity", "exact_image": "distance (always 0)"}


def _examples(rows: Sequence[DropRow]) -> list[dict[str, Any]]:
    """The drops closest to the threshold first: the ones that show whether it is right."""
    picked = sorted(rows, key=lambda r: (-r.distance, r.key))[:_EXAMPLES]
    return [
        {"key": r.key, "duplicate_of": r.duplicate_of, "distance": r.distance}
        if r.status == "duplicate"
        else {"key": r.key, "benchmark": r.benchmark, "file": r.matched_file, "distance": r.distance}
        for r in picked
    ]


def precision(st: StageStats) -> float | None:
    """Of the pairs the hashes proposed, the share the pixel check confirmed (None when the
    check did not run or there was nothing to check): the hash stage's precision, measured
    on this build's own images."""
    checked = st.checks.get("pixel_confirmed", 0) + st.checks.get("pixel_rejected", 0)
    return round(st.checks["pixel_confirmed"] / checked, 6) if checked else None


def build_report(result: DedupResult, registry: Registry | None = None) -> dict[str, Any]:
    rows_by_stage: dict[str, list[DropRow]] = {}
    for r in result.drops:
        rows_by_stage.setdefault(r.stage, []).append(r)
    stages = []
    for st in result.stats:
        rows = rows_by_stage.get(st.stage, [])
        entry = {**st.to_dict(), "examples": _examples(rows)}
        if st.checks:
            entry["hash_precision"] = precision(st)
        stages.append(entry)
    report: dict[str, Any] = {"stages": stages,
                              "near_duplicate_label_conflict": [c.to_dict() for c in result.conflicts]}
    if registry is not None or any(r.status == "contaminated" for r in result.drops):
        report["contamination"] = contamination_report(result.drops, registry)
    return report


def plot_distances(stats: Sequence[StageStats], path: Path) -> None:
    """One histogram per stage that drops at a distance (exact matches have none to show)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, no GUI, Agg on save

    shown = [s for s in stats if s.stage != "exact_image"]
    checked = [s for s in stats if s.similarities]
    n = max(1, len(shown) + len(checked))
    fig = Figure(figsize=(4.0 * n, 3.2), dpi=100)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, st in zip(axes[len(shown):], checked):
        ax.hist(st.similarities, bins=20, range=(min(0.5, min(st.similarities)), 1.0), color="#aa7744")
        ax.set_title(f"{st.stage} pixel check: {st.checks.get('pixel_confirmed', 0)} of "
                     f"{len(st.similarities)} confirmed", fontsize=9)
        ax.set_xlabel("pixel similarity of hash candidates", fontsize=8)
        ax.set_ylabel("pairs", fontsize=8)
    for ax, st in zip(axes, shown):
        if st.distances:
            ax.hist(st.distances, bins=min(32, max(4, len(set(st.distances)))), color="#4477aa")
        else:
            ax.text(0.5, 0.5, "no drops", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{st.stage}: {st.dropped} dropped, {st.clusters} clusters", fontsize=9)
        ax.set_xlabel(_UNITS.get(st.stage, "distance"), fontsize=8)
        ax.set_ylabel("samples", fontsize=8)
    if not shown:
        axes[0].text(0.5, 0.5, "no distance-based stage ran", ha="center", va="center")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", metadata={"Software": None})
    os.replace(tmp, path)


def write_report(result: DedupResult, out_dir: Path, registry: Registry | None = None) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(result, registry)
    tmp = out_dir / ".dedup_report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "dedup_report.json")
    plot_distances(result.stats, out_dir / "dedup_distances.png")
    return report


def format_report(report: dict[str, Any]) -> list[str]:
    lines = []
    for st in report["stages"]:
        skipped = ", ".join(f"{k} {v}" for k, v in st["skipped"].items())
        lines.append(f"{st['stage']:<12} in {st['inputs']:>8}  kept {st['kept']:>8}  dropped {st['dropped']:>7}"
                     f"  clusters {st['clusters']:>6}" + (f"  (not judged: {skipped})" if skipped else ""))
        if st.get("checks"):
            checks = ", ".join(f"{k} {v}" for k, v in st["checks"].items())
            prec = st.get("hash_precision")
            lines.append(f"{'':<12} {checks}" + (f"; hash precision {prec:.3f}" if prec is not None else ""))
    conflicts = report.get("near_duplicate_label_conflict", [])
    if conflicts:
        kept = sum(c["action"] == "kept_both" for c in conflicts)
        lines.append(f"label conflicts: {len(conflicts)} near-identical pairs with different labels "
                     f"({kept} kept both, {len(conflicts) - kept} dropped both)")
    for bench, c in report.get("contamination", {}).items():
        lines.append(f"contaminated by {bench}: {c['samples']} samples, {c['matched_files']} benchmark files")
    return lines
