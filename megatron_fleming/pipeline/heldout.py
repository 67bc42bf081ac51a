"""A benchmark fixture in a released layout, from held-out records of a datakit build.

    python -m megatron_fleming.pipeline.heldout --build DIR --out DIR --tasks modality_mcq \\
        (--fraction 0.3 | --per-source 2) --seed 17 [--langs en] [--sources a,b]

The build (made without decontamination) holds every record's samples (``fleming-vqa/2``: each
question a turn of its record's conversation); a seeded ``fraction`` of
its records (of the named ``sources``, or of all), chosen by the sample ``group`` (one record, EN
and ZH twins together), is held out, or the ``per_source`` records of each source with the lowest
seeded rank (on a handful of records per source a fraction can take most of one source and none
of another; a count leaves every source the same number of training records),
and their multiple-choice samples of ``tasks`` become OmniMedVQA's released layout::

    <out>/QA_information/Open-access/<source>.json   question_id, question, option_A.., gt_answer,
                                                     image_path, question_type (the task),
                                                     modality_type, dataset (the source)
    <out>/Images/<source>/<sha256 of the image>.<ext>
    <out>/heldout.json                               what was held out, counts, chance level

``datakit decontam add NAME <out> --benchmark omnimedvqa`` then registers exactly these images,
and every build checked against the registry drops them and their near duplicates (manifest
status ``contaminated``): the proof that training never sees them. The question is the sample's
own, without its option lines and answer instruction (the evaluation prompt lists the options
as MedEvalKit does).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

from datakit.sample import turn_docs
from datakit.seeding import unit_interval
from datakit.shard_writer import iter_samples

LETTERS = "ABCDEFGH"
_OPTION_LINE = re.compile(r"^[A-H]\.\s")
_IMAGE = "<image>"


def held_out(seed: int, group: str, fraction: float) -> bool:
    return unit_interval(seed, "heldout", group) < fraction


def held_out_groups(by_source: dict[str, set[str]], seed: int, *, fraction: float | None,
                    per_source: int | None) -> set[str]:
    """The held-out groups: each below the seeded ``fraction``, or each source's ``per_source``
    lowest-ranked ones (all of a source with fewer)."""
    if (fraction is None) == (per_source is None):
        raise ValueError("heldout: give exactly one of fraction and per_source")
    if fraction is not None:
        return {g for groups in by_source.values() for g in groups if held_out(seed, g, fraction)}
    return {g for groups in by_source.values()
            for g in sorted(groups, key=lambda g: (unit_interval(seed, "heldout", g), g))[:per_source]}


def question_text(human_turn: str) -> str:
    """The question alone: image tokens, option lines and what follows them removed."""
    lines = [line for line in human_turn.replace(_IMAGE, "").splitlines() if line.strip()]
    end = next((i for i, line in enumerate(lines) if _OPTION_LINE.match(line)), len(lines))
    return "\n".join(lines[:end]).strip()


def _row(doc: dict, turn: dict, parts: dict, out: Path) -> dict:
    """One OmniMedVQA question of a single-turn sample; its image written under ``Images/``."""
    media = doc["media"][0]
    image = parts[media["part"]]
    rel = f"Images/{doc['source']}/{hashlib.sha256(image).hexdigest()}.{media['part'].split('.', 1)[1]}"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    (out / rel).write_bytes(image)
    options = list(turn["options"])
    row = {"dataset": doc["source"], "question_id": turn["key"], "question_type": turn["task"],
           "question": question_text(doc["conversations"][0]["value"]),
           "gt_answer": options[LETTERS.index(turn["answer"])], "image_path": rel, "modality_type": doc["modality"]}
    row.update({f"option_{LETTERS[i]}": text for i, text in enumerate(options)})
    return row


def write_fixture(build: Path, out: Path, *, tasks: set[str], langs: set[str], fraction: float | None = None,
                  per_source: int | None = None, seed: int, sources: set[str] | None = None) -> dict:
    tars = sorted(build.glob("*/*.tar"))
    if not tars:
        raise SystemExit(f"heldout: no shards under {build}/<split>/ (is it a datakit build?)")
    shutil.rmtree(out, ignore_errors=True)
    rows: dict[str, list[dict]] = {}
    samples = []
    by_source: dict[str, set[str]] = {}
    for tar in tars:
        for _, parts in iter_samples(tar):
            sample = json.loads(parts["json"])
            if "turns" not in sample or (sources is not None and sample["source"] not in sources):
                continue  # an interleaved document has no questions
            by_source.setdefault(sample["source"], set()).add(sample["group"])
            samples.append((sample, parts))
    all_groups = {g for groups in by_source.values() for g in groups}
    groups = held_out_groups(by_source, seed, fraction=fraction, per_source=per_source)
    for sample, parts in samples:
        if sample["group"] not in groups:
            continue
        for doc in turn_docs(sample):  # each question of a conversation on its own
            turn = doc["turns"][0]
            if turn["task"] not in tasks or doc["lang"] not in langs or turn["question_type"] != "mcq":
                continue
            if len(doc["media"]) != 1 or not turn.get("options"):
                continue
            rows.setdefault(doc["source"], []).append(_row(doc, turn, parts, out))
    items = [r for source in sorted(rows) for r in sorted(rows[source], key=lambda r: r["question_id"])]
    if not items:
        raise SystemExit(f"heldout: no multiple-choice {sorted(tasks)} sample in {sorted(langs)} among the "
                         f"{len(groups)} held-out records of {build} (fraction {fraction}, per source {per_source}, "
                         f"seed {seed})")
    for source, source_rows in sorted(rows.items()):
        path = out / "QA_information" / "Open-access" / f"{source}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(sorted(source_rows, key=lambda r: r["question_id"]), indent=1,
                                   ensure_ascii=False) + "\n")
    (out / "QA_information" / "Restricted-access").mkdir(parents=True, exist_ok=True)
    options = [sum(1 for k in r if k.startswith("option_")) for r in items]
    report = {
        "build": str(build), "tasks": sorted(tasks), "langs": sorted(langs), "fraction": fraction,
        "per_source": per_source, "seed": seed,
        "sources": None if sources is None else sorted(sources),
        "records": len(all_groups), "held_out_records": sorted(groups), "items": len(items),
        "items_by_source": dict(sorted(Counter(r["dataset"] for r in items).items())),
        "answers": dict(sorted(Counter(r["gt_answer"] for r in items).items())),
        "chance_accuracy": sum(1 / n for n in options) / len(options),
        "majority_accuracy": max(Counter(r["gt_answer"] for r in items).values()) / len(items),
    }
    (out / "heldout.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m megatron_fleming.pipeline.heldout", description=__doc__.splitlines()[0])
    p.add_argument("--build", type=Path, required=True, help="a datakit build folder")
    p.add_argument("--out", type=Path, required=True, help="the benchmark folder to write")
    p.add_argument("--tasks", required=True, help="comma-separated sample tasks (multiple choice)")
    p.add_argument("--langs", default="en")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--fraction", type=float, help="share of the records held out")
    how.add_argument("--per-source", type=int, help="records held out of each source")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--sources", default=None, help="comma-separated: hold out records of these sources only")
    args = p.parse_args(argv)
    report = write_fixture(args.build, args.out, tasks=set(args.tasks.split(",")), langs=set(args.langs.split(",")),
                           fraction=args.fraction, per_source=args.per_source, seed=args.seed,
                           sources=set(args.sources.split(",")) if args.sources else None)
    print(f"held out {len(report['held_out_records'])} of {report['records']} records: {report['items']} items "
          f"{report['items_by_source']}, chance {report['chance_accuracy']:.3f}, "
          f"majority answer {report['majority_accuracy']:.3f} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
