"""Draw the GRPO set (paper stage 4) from built instruction shards.

Two streaming passes over the shards, in sorted path order: the first reads only each sample's
JSON, splits a multi-turn conversation into its turns (``sample.turn_docs``: GRPO asks one
question at a time), keeps the eligible turns (multiple choice, open, yes/no) and picks the
target number by a seeded rank of the turn's key (a bounded heap, so memory follows the target,
not the input); the second writes each picked turn as a single-turn sample with its media,
rewriting multiple choice as open-ended questions whose reference answer is the correct
option's text. Yes/no questions are capped at ``yes_no_share``
of the result (about 5% in the paper): they reward guessing, half the time.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from datakit import energon_format
from datakit.llm.mcq_stem import cites_options, open_stem
from datakit.llm.tarball import read_extents, scan_sample_tar
from datakit.llm.validate import normalise
from datakit.sample import IMAGE_TOKEN, canonical_json, turn_docs
from datakit.seeding import unit_interval
from datakit.shard_writer import AtomicTarWriter

ELIGIBLE = ("mcq", "open", "yes_no")
_YES_NO = frozenset({"yes", "no", "是", "否", "是的", "不是"})
_OPEN_INSTRUCTION = {"en": "Answer the question with a short phrase.", "zh": "请用简短的词语回答问题。"}
_OPTIONS_LABEL = re.compile(r"(?:options|choices|选项)\s*[:：]?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True, kw_only=True)
class GRPOConfig:
    seed: int
    target_size: int = 100_000
    yes_no_share: float = 0.05
    samples_per_shard: int = 1000

    def __post_init__(self) -> None:
        if self.target_size < 1:
            raise ValueError(f"target_size must be >= 1, got {self.target_size}")
        if not 0.0 <= self.yes_no_share < 1.0:
            raise ValueError(f"yes_no_share must be in [0, 1), got {self.yes_no_share}")
        if self.samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {self.samples_per_shard}")


@dataclass(slots=True, kw_only=True)
class GRPOReport:
    candidates: Counter[str] = field(default_factory=Counter)  # eligible samples, by kind
    selected: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # not eligible, by reason
    shards: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        total = sum(self.selected.values())
        return {
            "candidates": dict(sorted(self.candidates.items())),
            "selected": dict(sorted(self.selected.items())),
            "selected_total": total,
            "yes_no_share": round(self.selected["yes_no"] / total, 6) if total else 0.0,
            "dropped": dict(sorted(self.dropped.items())),
            "shards": self.shards,
        }


def kind_of(d: dict[str, Any]) -> str | None:
    """``yes_no``, ``mcq`` or ``open`` of a single-turn sample; None for captions, reports and the
    like. A question whose answer is yes or no counts as yes/no whatever its type (a Yes/No
    multiple choice included)."""
    turn = d["turns"][0]
    qtype, answer = turn.get("question_type"), str(turn.get("answer", ""))
    if qtype == "mcq":
        answer = reference_answer(answer, turn.get("options") or []) or answer
    if qtype == "yes_no" or normalise(answer) in _YES_NO:
        return "yes_no"
    return qtype if qtype in ELIGIBLE else None


def reference_answer(answer: str, options: Sequence[str]) -> str | None:
    """The correct option's text, whether ``answer`` is the text, a letter, or ``B. text``."""
    norm = normalise(answer)
    for opt in options:
        if normalise(opt) == norm:
            return opt
    m = re.fullmatch(r"\(?([A-Ha-h])\)?(?:[.)：:、]\s*(.*))?", answer.strip(), re.DOTALL)
    if m:
        i = ord(m.group(1).upper()) - ord("A")
        if i < len(options) and (not m.group(2) or normalise(m.group(2)) == normalise(options[i])):
            return options[i]
    return None


def mcq_to_open(d: dict[str, Any]) -> dict[str, Any] | str:
    """A single-turn sample's JSON with the question open-ended and the answer the option text;
    or the reason it cannot be rewritten."""
    turn = d["turns"][0]
    options = turn.get("options") or []
    if not options:
        return "mcq_without_options"
    ref = reference_answer(str(turn.get("answer", "")), options)
    if ref is None:
        return "mcq_answer_not_in_options"
    human = d["conversations"][0]["value"]
    m = re.search(rf"(?:^|\s)\(?[A-H]\)?[.)：:、]\s*{re.escape(options[0])}", human)
    if m is None:
        return "mcq_options_not_found"
    stem = _OPTIONS_LABEL.sub("", human[: m.start()].rstrip()).rstrip()
    if not stem.replace(IMAGE_TOKEN, "").strip():
        return "mcq_without_stem"
    stem = open_stem(stem)
    if cites_options(stem):
        return "mcq_stem_cites_options"
    instruction = _OPEN_INSTRUCTION.get(d.get("lang", "en"), _OPEN_INSTRUCTION["en"])
    grpo = {"from": "mcq", "options": list(options), "mcq_answer": turn.get("answer")}
    return {
        **d,
        "turns": [{**turn, "question_type": "open", "options": None, "answer": ref}],
        "conversations": [{"from": "human", "value": f"{stem}\n{instruction}"}, {"from": "gpt", "value": ref}],
        "provenance": {**(d.get("provenance") or {}), "grpo": grpo},
    }


def _eligible(d: dict[str, Any], report: GRPOReport) -> str | None:
    kind = kind_of(d)
    reason = "ineligible_question_type" if kind is None else ""
    turn = d["turns"][0]
    if kind is not None and turn.get("question_type") == "mcq":
        rewritten = mcq_to_open(d)
        reason = rewritten if isinstance(rewritten, str) else ""
    elif kind is not None and not str(turn.get("answer", "")).strip():
        reason = "missing_reference_answer"
    if reason:
        report.dropped[reason] += 1
        return None
    return kind


@dataclass(frozen=True, slots=True, order=True)
class _Pick:
    neg_rank: float  # heaps are min-heaps: the root is the worst (highest-rank) pick kept
    key: str
    shard: int
    kind: str = field(compare=False)
    extents: tuple[tuple[str, int, int], ...] = field(compare=False)


def _pick(shards: Sequence[Path], cfg: GRPOConfig, report: GRPOReport) -> list[_Pick]:
    """The chosen samples, located in their shards: lowest seeded ranks, yes/no capped."""
    cap_other = round(cfg.target_size * (1.0 - cfg.yes_no_share))
    cap_yes_no = round(cap_other * cfg.yes_no_share / (1.0 - cfg.yes_no_share)) + 1
    heaps: dict[str, list[_Pick]] = {"other": [], "yes_no": []}
    for shard, path in enumerate(shards):
        for s in scan_sample_tar(path, read=frozenset({"json"})):
            extents = tuple((part, off, size) for part, (off, size) in s.extents.items())
            for d in turn_docs(json.loads(s.parts["json"])):
                kind = _eligible(d, report)
                if kind is None:
                    continue
                report.candidates[kind] += 1
                group, cap = ("yes_no", cap_yes_no) if kind == "yes_no" else ("other", cap_other)
                key = d["turns"][0]["key"]
                item = _Pick(-unit_interval(cfg.seed, "grpo", key), key, shard, kind, extents)
                if len(heaps[group]) < cap:
                    heapq.heappush(heaps[group], item)
                elif item > heaps[group][0]:
                    heapq.heapreplace(heaps[group], item)
    others = heaps["other"]
    # a cap: the largest count whose share of the result is at most yes_no_share (1e-9: float noise)
    n_yes_no = math.floor(len(others) * cfg.yes_no_share / (1.0 - cfg.yes_no_share) + 1e-9)
    yes_no = sorted(heaps["yes_no"], reverse=True)[:n_yes_no]  # lowest ranks first
    first: dict[str, _Pick] = {}
    for p in sorted(others + yes_no, key=lambda p: (p.shard, p.extents[0][1])):
        first.setdefault(p.key, p)  # a key met twice is written once
    return list(first.values())


def _parts(d: dict[str, Any], parts: dict[str, bytes]) -> list[tuple[str, bytes]] | str:
    """A single-turn sample's tar parts (JSON first, then its media checked against their
    sha256), or the reason it cannot be written."""
    out = [("json", canonical_json(d))]
    for m in d.get("media", []):
        data = parts.get(m["part"])
        if data is None or hashlib.sha256(data).hexdigest() != m["sha256"]:
            return "media_missing_or_corrupt"
        out.append((m["part"], data))
    return out


def prepare_grpo(shards: Iterable[Path], out_dir: Path, cfg: GRPOConfig) -> GRPOReport:
    """Write the GRPO set drawn from ``shards`` as ``out_dir/grpo-NNNNNN.tar`` + report; the
    samples keep their input order (shards in sorted path order, then tar order)."""
    paths = sorted(Path(p) for p in shards)
    report = GRPOReport()
    by_shard: dict[int, list[_Pick]] = {}
    for p in _pick(paths, cfg, report):
        by_shard.setdefault(p.shard, []).append(p)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer: AtomicTarWriter | None = None
    written = 0  # samples in the current output tar
    for shard, picks in sorted(by_shard.items()):
        with paths[shard].open("rb") as f:
            for p in picks:
                parts = read_extents(f, {part: (off, size) for part, off, size in p.extents})
                d = next(t for t in turn_docs(json.loads(parts["json"])) if t["turns"][0]["key"] == p.key)
                rewritten = mcq_to_open(d) if d["turns"][0].get("question_type") == "mcq" else d
                tar_parts = _parts(rewritten, parts)  # type: ignore[arg-type]
                if isinstance(tar_parts, str):
                    report.dropped[tar_parts] += 1
                    continue
                if writer is None or written >= cfg.samples_per_shard:
                    if writer is not None:
                        writer.close()
                    writer, written = AtomicTarWriter(out_dir / f"grpo-{len(report.shards):06d}.tar"), 0
                    report.shards.append(writer.path.name)
                writer.add_sample(p.key, tar_parts)
                written += 1
                report.selected[p.kind] += 1
    if writer is not None:
        writer.close()
    for stale in out_dir.glob("grpo-*.tar"):  # left by an earlier, larger draw into this folder
        if stale.name not in report.shards:
            stale.unlink()
    # its own Energon dataset: every drawn tar is the "train" split, read by the GRPO stage
    energon_format.write_dataset_yaml(out_dir, "grpo")
    if report.shards:
        energon_format.prepare(out_dir, list(report.shards), split_patterns=[("train", "grpo-.*")])
    (out_dir / "grpo_report.json").write_bytes(canonical_json(report.to_dict()) + b"\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m datakit.llm.grpo_prep", description=__doc__.splitlines()[0])
    p.add_argument("shards", nargs="+", type=Path, help="shard tars, or folders searched for *.tar")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--target-size", type=int, default=100_000)
    p.add_argument("--yes-no-share", type=float, default=0.05)
    p.add_argument("--samples-per-shard", type=int, default=1000)
    args = p.parse_args(argv)
    tars = [t for s in args.shards for t in (sorted(s.rglob("*.tar")) if s.is_dir() else [s])]
    cfg = GRPOConfig(seed=args.seed, target_size=args.target_size, yes_no_share=args.yes_no_share,
                     samples_per_shard=args.samples_per_shard)
    report = prepare_grpo(tars, args.out, cfg)
    print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
