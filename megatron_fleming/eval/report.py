"""The run's Markdown table beside the paper's Table 3 (Fleming-VL-8B), and the same as a PNG.

Percent everywhere: accuracy, ROUGE-L ×100, CIDEr ×100 (pycocoevalcap's CIDEr-D, itself ×10).
The paper's report and summary numbers came from MedEvalKit's metric code (the ``rouge`` package
and ``cidereval``), ours from ``rouge-score`` and ``pycocoevalcap`` over a stated tokenisation, and
its video benchmark is not public: those rows compare orders of magnitude, not digits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

#: (benchmark, headline key, benchmark label, metric label, Fleming-VL-8B in Table 3 or None).
TABLE3: tuple[tuple[str, str, str, str, float | None], ...] = (
    ("omnimedvqa", "accuracy", "OmniMedVQA (open access)", "accuracy", 86.7),
    ("pmc_vqa", "accuracy", "PMC-VQA", "accuracy", 64.3),
    ("path_vqa", "accuracy", "PathVQA", "accuracy", 62.9),
    ("slake", "accuracy", "SLAKE", "accuracy", 86.5),
    ("vqa_rad", "accuracy", "VQA-RAD", "accuracy", 66.1),
    ("mimic_cxr", "report_rouge_l", "MIMIC-CXR", "ROUGE-L", 35.7),
    ("mimic_cxr", "report_cider", "MIMIC-CXR", "CIDEr", 132.5),
    ("iu_xray", "report_rouge_l", "IU-Xray", "ROUGE-L", None),
    ("iu_xray", "report_cider", "IU-Xray", "CIDEr", None),
    ("medvideo", "summary_rouge_l", "Video summary", "ROUGE-L", 44.7),
    ("medvideo", "summary_cider", "Video summary", "CIDEr", 285.0),
    ("medvideo", "accuracy", "Video VQA", "accuracy", 90.2),
    ("m3d_vqa", "accuracy", "M3D-VQA", "accuracy", 61.9),
)


def table_rows(summaries: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, float | None, float | None]]:
    """(benchmark label, metric, ours, paper) for every Table 3 row of a benchmark in the run."""
    rows = []
    for name, key, label, metric, paper in TABLE3:
        if name in summaries:
            rows.append((label, metric, summaries[name]["headline"].get(key), paper))
    return rows


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def markdown(summaries: Mapping[str, Mapping[str, Any]], title: str) -> str:
    lines = [f"# {title}", "", "| Benchmark | Metric | This run | Fleming-VL-8B (paper, Table 3) | Δ |",
             "|---|---|---:|---:|---:|"]
    for label, metric, ours, paper in table_rows(summaries):
        delta = _fmt(ours - paper) if ours is not None and paper is not None else "—"
        lines.append(f"| {label} | {metric} | {_fmt(ours)} | {_fmt(paper)} | {delta} |")
    lines += ["", "Items per benchmark: " + ", ".join(f"{n} {s['n_items']}" for n, s in summaries.items()) + ".",
              "Accuracy in %, ROUGE-L and CIDEr ×100. Scoring rules and every difference from MedEvalKit: "
              "docs/evaluation.md."]
    return "\n".join(lines) + "\n"


def chart(summaries: Mapping[str, Mapping[str, Any]], path: Path, title: str) -> Path:
    """Grouped horizontal bars, this run against the paper, one pair per Table 3 row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table_rows(summaries)
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.4), dpi=100)
    labels = [f"{label} {metric}" for label, metric, _, _ in rows]
    ys = range(len(rows))
    ax.barh([y + 0.2 for y in ys], [r[2] or 0.0 for r in rows], height=0.4, label="this run", color="#2b6cb0")
    ax.barh([y - 0.2 for y in ys], [r[3] or 0.0 for r in rows], height=0.4, label="Fleming-VL-8B (paper)",
            color="#a0aec0")
    ax.set_yticks(list(ys), labels)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy % / ROUGE-L ×100 / CIDEr ×100")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
