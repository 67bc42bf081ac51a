"""The pipeline's report: ``<out>/report/report.md``, ``losses.png``, ``scores.png`` and
``report.json`` (the figures the Markdown shows, for scripts and tests).

    python -m megatron_fleming.pipeline.report OUT

Read from what the steps wrote: ``pipeline.json`` (the chain), each build's ``build.json`` and
``manifest.parquet`` (samples, and the rows decontamination dropped), the held-out fixture's
``heldout.json``, each stage's ``metrics.jsonl`` (loss per step; GRPO's reward and accuracy),
each evaluation's ``summary.json``, and the completion markers (wall time per step). Scores sit
beside the paper's Table 3 (`megatron_fleming.eval.report.TABLE3`) only for benchmarks marked as
the paper's; the held-out fixture is not one, and says so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from megatron_fleming.eval.report import TABLE3

MAX_MANIFEST_ROWS = 8


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _contaminated(build: Path) -> list[dict]:
    path = build / "manifest.parquet"
    if not path.is_file():
        return []
    import polars as pl

    rows = pl.read_parquet(path).filter((pl.col("status") == "contaminated") & (pl.col("kind") == "record"))
    return rows.select("source", "path", "reason", "detail", "n_samples").to_dicts()


def collect(out: Path) -> dict:
    """Every figure of the report, from the files the chain wrote."""
    plan = _json(out / "pipeline.json")
    if plan is None:
        raise SystemExit(f"report: no {out}/pipeline.json; run `fleming pipeline` first")
    steps = {s["name"]: (_json(out / ".steps" / f"{s['name']}.done") or {}) for s in plan["steps"]}
    builds = {}
    for name, folder in plan["builds"].items():
        summary = (_json(Path(folder) / "build.json") or {}).get("summary", {})
        acc = summary.get("accounting", {}).get("samples", {})
        builds[name] = {"splits": summary.get("splits", {}), "contaminated_samples": acc.get("contaminated", 0),
                        "contaminated_records": _contaminated(Path(folder))}
    heldout = _json(Path(plan["heldout"]["fixture"]) / "heldout.json") if plan["heldout"] else None
    points = []
    for point in plan["points"]:
        metrics = _metrics(Path(point["run"]))
        key = "reward" if point["command"] == "grpo" else "loss"
        series = [(m["iteration"], m[key]) for m in metrics if m.get(key) is not None]
        tenth = max(1, len(series) // 10)
        summary = _json(Path(point["eval"]) / "summary.json") if point["eval"] else None
        benchmarks = (summary or {}).get("benchmarks", {})
        scores = {name: s["headline"] for name, s in benchmarks.items()}
        by_modality = {name: {m: v["accuracy"] * 100 for m, v in s.get("by_modality", {}).items()}
                       for name, s in benchmarks.items()}
        points.append({"name": point["name"], "command": point["command"], "metric": key, "series": series,
                       "first": _mean([v for _, v in series[:tenth]]), "last": _mean([v for _, v in series[-tenth:]]),
                       "accuracy": [(m["iteration"], m["accuracy"]) for m in metrics if "accuracy" in m],
                       "skipped_groups": sum(m.get("skipped_groups", 0) for m in metrics),
                       "evaluated": summary is not None, "scores": scores, "by_modality": by_modality,
                       "balanced": {n: _mean(list(m.values())) for n, m in by_modality.items()},
                       "seconds": steps.get(point["name"], {}).get("seconds")})
    return {"name": plan["name"], "description": plan["description"], "config": plan["config"],
            "steps": {n: d.get("seconds") for n, d in steps.items()},
            "wall_seconds": sum(d.get("seconds") or 0.0 for d in steps.values()),
            "builds": builds, "heldout": heldout, "points": points, "benchmarks": plan["benchmarks"]}


def _rows(figures: dict) -> list[tuple[str, str, str, float | None]]:
    """(benchmark, headline key, label, paper figure) for each score the evaluations report."""
    keys: dict[str, list[str]] = {}
    for point in figures["points"]:
        for name, headline in point["scores"].items():
            for key in headline:
                if key not in keys.setdefault(name, []):
                    keys[name].append(key)
    rows = []
    for name, info in figures["benchmarks"].items():
        for key in keys.get(name, []):
            paper = next((p for b, k, _, _, p in TABLE3 if b == name and k == key), None) if info["paper"] else None
            rows.append((name, key, f"{info['label']} ({key})", paper))
    return rows


def markdown(figures: dict, out: Path) -> str:
    lines = [f"# Pipeline `{figures['name']}`", "", figures["description"].strip(), "",
             f"Config `{figures['config']}`; every step's wall time summed: {figures['wall_seconds']:.0f} s "
             f"({figures['wall_seconds'] / 60:.1f} min).", ""]
    points = [p for p in figures["points"] if p["evaluated"]]
    lines += ["## Evaluation after each stage", ""]
    rows = _rows(figures)
    heldout = figures["heldout"]
    header = "| benchmark | " + " | ".join(p["name"] for p in points) + " | chance | paper (Table 3) |"
    lines += [header, "|---|" + "---:|" * (len(points) + 2)]
    for name, key, label, paper in rows:
        chance = heldout["chance_accuracy"] * 100 if heldout and figures["benchmarks"][name]["heldout"] \
            and key == "accuracy" else None
        values = [_fmt(p["scores"].get(name, {}).get(key)) for p in points]
        lines.append(f"| {label} | " + " | ".join(values) + f" | {_fmt(chance)} | {_fmt(paper)} |")
    lines += ["", "Accuracy in %, ROUGE-L and CIDEr ×100. 'paper' is Fleming-VL-8B in the paper's Table 3, shown "
              "only for the paper's own benchmarks; the held-out fixture is not one of them.", "",
              "![scores](scores.png)", ""]
    if heldout:
        held = [n for n, b in figures["benchmarks"].items() if b["heldout"]]
        modalities = sorted({m for p in points for n in held for m in p["by_modality"].get(n, {})})
        lines += ["## Held-out items", "", "Accuracy per modality (%), and balanced accuracy (their mean: a model "
                  f"that always gives one answer, whatever it is, scores at most {100 / max(1, len(modalities)):.1f} "
                  "on it; above that, the answers depend on the image):", "", "| modality | " + " | ".join(p["name"] for p in points) + " |",
                  "|---|" + "---:|" * len(points)]
        for n in held:
            for m in modalities:
                lines.append(f"| {m} | " + " | ".join(_fmt(p["by_modality"].get(n, {}).get(m)) for p in points) + " |")
            lines.append("| **balanced** | " + " | ".join(_fmt(p["balanced"].get(n)) for p in points) + " |")
        lines += ["",
                  f"Task(s) {', '.join(heldout['tasks'])}: {heldout['items']} multiple-choice items from "
                  f"{len(heldout['held_out_records'])} of {heldout['records']} records ("
                  + (f"seeded fraction {heldout['fraction']}" if heldout.get("per_source") is None
                     else f"{heldout['per_source']} a source, seeded") + f"), by source {heldout['items_by_source']}. Chance "
                  f"{heldout['chance_accuracy'] * 100:.1f}%; always giving the most frequent answer "
                  f"{heldout['majority_accuracy'] * 100:.1f}%.", "",
                  "Never trained on: the fixture is registered for decontamination, and every build dropped "
                  "its images and their near duplicates (manifest status `contaminated`):", "",
                  "| build | samples dropped | records dropped |", "|---|---:|---:|"]
        for name, b in figures["builds"].items():
            lines.append(f"| {name} | {b['contaminated_samples']} | {len(b['contaminated_records'])} |")
        shown = [(n, r) for n, b in figures["builds"].items() for r in b["contaminated_records"]][:MAX_MANIFEST_ROWS]
        if shown:
            lines += ["", "| build | source | path | reason | detail | samples |", "|---|---|---|---|---|---:|"]
            lines += [f"| {n} | {r['source']} | `{r['path']}` | {r['reason']} | {r['detail']} | {r['n_samples']} |"
                      for n, r in shown]
        lines.append("")
    lines += ["## Training", "", "| point | command | steps | first 10% | last 10% | wall s |", "|---|---|---:|---:|---:|---:|"]
    for p in figures["points"]:
        lines.append(f"| {p['name']} | {p['command']} | {len(p['series'])} | {p['metric']} {_fmt(p['first'], 3)} | "
                     f"{p['metric']} {_fmt(p['last'], 3)} | {_fmt(p['seconds'], 0)} |")
    lines += ["", "![losses](losses.png)", "", "## Data", "", "| build | train | val | contaminated samples |",
              "|---|---:|---:|---:|"]
    for name, b in figures["builds"].items():
        lines.append(f"| {name} | {b['splits'].get('train', '—')} | {b['splits'].get('val', '—')} | "
                     f"{b['contaminated_samples']} |")
    lines += ["", "## Steps", "", "| step | wall s |", "|---|---:|"]
    lines += [f"| {n} | {_fmt(s, 1)} |" for n, s in figures["steps"].items()]
    return "\n".join(lines) + "\n"


def charts(figures: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [p for p in figures["points"] if p["series"] and p["command"] != "init"]
    fig, axes = plt.subplots(1, max(1, len(trained)), figsize=(3.2 * max(1, len(trained)), 2.8), dpi=100,
                             squeeze=False)
    for ax, p in zip(axes[0], trained):
        xs, ys = zip(*p["series"])
        ax.plot(xs, ys, lw=1, color="#2b6cb0", label=p["metric"])
        if p["accuracy"]:
            ax.plot(*zip(*p["accuracy"]), lw=1, color="#c05621", label="accuracy")
            ax.legend(fontsize=7)
        ax.set_title(f"{p['name']} ({p['command']})", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "losses.png", format="png", metadata={"Software": None})
    plt.close(fig)

    points = [p for p in figures["points"] if p["evaluated"]]
    rows = _rows(figures)
    fig, ax = plt.subplots(figsize=(6.5, 3.2), dpi=100)
    for name, key, label, paper in rows:
        ys = [p["scores"].get(name, {}).get(key) for p in points]
        line = ax.plot([p["name"] for p in points], [y if y is not None else float("nan") for y in ys],
                       marker="o", label=label)[0]
        if paper is not None:
            ax.axhline(paper, ls="--", lw=1, color=line.get_color(), label=f"{label}: paper")
    heldout = figures["heldout"]
    if heldout:
        ax.axhline(heldout["chance_accuracy"] * 100, ls=":", lw=1, color="grey", label="held-out chance")
    ax.set_ylabel("score (%)")
    ax.set_title(f"{figures['name']}: evaluation after each stage", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "scores.png", format="png", metadata={"Software": None})
    plt.close(fig)


def write_report(out: Path) -> Path:
    figures = collect(out)
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    charts(figures, folder)
    (folder / "report.json").write_text(json.dumps(figures, indent=1, default=str) + "\n")
    path = folder / "report.md"
    path.write_text(markdown(figures, out))
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m megatron_fleming.pipeline.report OUT")
    print(f"wrote {write_report(Path(args[0]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
