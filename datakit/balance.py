"""What a build holds, and the recipe's caps on it: ``balance_report.json`` + ``balance_report.png``.

Every build counts its emitted question/answer turns by source, task, question type, language,
modality and split, the letter distribution of multiple-choice answers, and the yes/no share,
so a lopsided mix (30% yes/no questions, every correct answer "A") shows before training does.

A recipe may cap shares of the whole (``balance:`` in the recipe)::

    balance:
      caps:
        question_type: {yes_no: 0.15}   # at most 15% of the turns are yes/no questions
        task: {organ_presence: 0.10}
        source: {abdomen_us: 0.3}

Each cap keeps the turns of that value with the lowest seeded rank and drops the rest as
``balanced_out`` manifest rows; the rank is drawn per (record, task slot), the same for the
English and Chinese twins, so twins go together. Caps are applied in a fixed order until all
hold (dropping for one cap lowers the others' totals).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from datakit.errors import RecipeError
from datakit.seeding import unit_interval

DIMENSIONS = ("source", "task", "question_type", "lang", "modality", "split")
CAPPABLE = ("source", "task", "question_type", "lang", "modality")
_LATIN = {"是": "yes (zh)", "否": "no (zh)"}


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceConfig:
    caps: tuple[tuple[str, str, float], ...] = ()  # (dimension, value, max share), sorted

    @classmethod
    def from_recipe(cls, raw: Mapping[str, Any] | None) -> "BalanceConfig":
        raw = dict(raw or {})
        unknown = set(raw) - {"caps"}
        if unknown:
            raise RecipeError(f"balance.{sorted(unknown)[0]}: unknown key; allowed: ['caps']")
        caps = raw.get("caps") or {}
        if not isinstance(caps, dict):
            raise RecipeError(f"balance.caps: must be a mapping of dimension -> {{value: share}}, got {caps!r}")
        out = []
        for dim, values in caps.items():
            if dim not in CAPPABLE:
                raise RecipeError(f"balance.caps.{dim}: unknown dimension; allowed: {list(CAPPABLE)}")
            if not isinstance(values, dict) or not values:
                raise RecipeError(f"balance.caps.{dim}: must be a mapping of value -> share")
            for value, share in values.items():
                if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
                    raise RecipeError(f"balance.caps.{dim}.{value}: share must be a number in (0, 1), got {share!r}")
                out.append((str(dim), str(value), float(share)))
        return cls(caps=tuple(sorted(out)))


def _twins(item: Mapping[str, Any]) -> tuple[str, str]:
    """A sample's EN/ZH twins share this: its record and its slot without the language."""
    return item["record_uid"], str(item.get("slot", "")).rsplit("-", 1)[0]


def apply_caps(items: list[dict[str, Any]], cfg: BalanceConfig, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, dropped): the fewest twin sets dropped, highest seeded rank first, so every cap
    holds; twins are dropped together, so a kept sample keeps its other-language twin."""
    kept = list(items)
    dropped: list[dict[str, Any]] = []
    for _ in range(len(cfg.caps) + 1):  # dropping for one cap only lowers the others' shares
        changed = False
        for dim, value, share in cfg.caps:
            match = [s for s in kept if str(s.get(dim)) == value]
            total = len(kept)
            excess = math.ceil((len(match) - share * total) / (1.0 - share) - 1e-9)
            if excess <= 0:
                continue
            sets: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for s in match:
                sets.setdefault(_twins(s), []).append(s)
            gone: list[dict[str, Any]] = []
            for twins in sorted(sets, key=lambda t: (-unit_interval(seed, "balance", *t), t)):
                if len(gone) >= excess:
                    break
                gone += sets[twins]
            keys = {s["key"] for s in gone}
            for s in gone:
                s["balanced_out"] = f"{dim}={value} above {share:g}"
            dropped += gone
            kept = [s for s in kept if s["key"] not in keys]
            changed = True
        if not changed:
            break
    return kept, dropped


@dataclass(slots=True)
class BalanceReport:
    counts: dict[str, Counter] = field(default_factory=dict)
    letters: Counter = field(default_factory=Counter)
    yes_no: Counter = field(default_factory=Counter)  # yes/no turns by answer word
    turns: int = 0
    conversations: int = 0
    turns_per_conversation: Counter = field(default_factory=Counter)
    balanced_out: Counter = field(default_factory=Counter)

    @classmethod
    def of(cls, items: list[dict[str, Any]], turns_per_conversation: Counter,
           dropped: list[dict[str, Any]]) -> "BalanceReport":
        rep = cls(counts={d: Counter(str(s.get(d)) for s in items) for d in DIMENSIONS})
        rep.turns = len(items)
        for s in items:
            if s.get("question_type") == "mcq" and s.get("mcq_letter"):
                rep.letters[s["mcq_letter"]] += 1
            if s.get("question_type") == "yes_no":
                rep.yes_no[str(s.get("claim"))] += 1
        rep.turns_per_conversation = turns_per_conversation
        rep.conversations = sum(turns_per_conversation.values())
        rep.balanced_out = Counter(s["balanced_out"] for s in dropped)
        return rep

    def to_dict(self) -> dict[str, Any]:
        yes_no = sum(self.yes_no.values())
        return {
            "turns": self.turns,
            "conversations": self.conversations,
            "turns_per_conversation": {str(k): v for k, v in sorted(self.turns_per_conversation.items())},
            **{d: dict(sorted(c.items())) for d, c in self.counts.items()},
            "mcq_answer_letters": dict(sorted(self.letters.items())),
            "yes_no_share": round(yes_no / self.turns, 6) if self.turns else 0.0,
            "yes_no_answers": dict(sorted(self.yes_no.items())),
            "balanced_out": dict(sorted(self.balanced_out.items())),
        }


def write_balance_report(report: BalanceReport, out: Path) -> dict[str, Any]:
    """``balance_report.json`` and ``balance_report.png`` in the build folder (byte-stable)."""
    doc = report.to_dict()
    tmp = out / ".balance_report.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / "balance_report.json")
    _plot(doc, out / "balance_report.png")
    return doc


def _plot(doc: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend, Agg on save

    yes_no = {_LATIN.get(k, k): v for k, v in doc["yes_no_answers"].items()}  # the plot font has no CJK
    panels = [(d, doc[d]) for d in DIMENSIONS] + [("mcq answer letter", doc["mcq_answer_letters"]),
                                                   ("yes/no answer", yes_no)]
    fig = Figure(figsize=(16, 8), dpi=80)
    axes = fig.subplots(2, 4).ravel()
    for ax, (title, counts) in zip(axes, panels):
        names = list(counts)
        if names:
            ax.barh(range(len(names)), [counts[n] for n in names], color="#4477aa")
            ax.set_yticks(range(len(names)), [n[:28] for n in names], fontsize=6)
            ax.invert_yaxis()
        else:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=6)
    fig.suptitle(f"{doc['turns']} turns in {doc['conversations']} conversations; "
                 f"yes/no share {doc['yes_no_share']:.1%}", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", metadata={"Software": None})
    os.replace(tmp, path)
