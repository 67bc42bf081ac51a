"""``fleming eval run`` and ``fleming eval score``: items -> responses -> scores -> outputs.

Both end in ``write_outputs`` and write the same files under ``--out``::

    <out>/<benchmark>/responses.jsonl   {"id", "response"} per item: the input ``score`` takes
    <out>/<benchmark>/items.jsonl       per item: id, prompt, response, parsed answer, rule, score...
    <out>/<benchmark>/summary.json      see ``summary.py``
    <out>/summary.json                  every benchmark's summary
    <out>/table3.md, <out>/table3.png   beside the paper's Table 3
    <out>/judge.json                    the judge's requests, cache hits, tokens (when one is used)

``run`` also writes ``<out>/run.json`` (backend, checkpoint, generation settings). Nothing written
depends on the clock, so the same responses give the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from datakit.benchmarks import BenchmarkRead, read_benchmark
from datakit.benchmarks.items import BenchItem
from datakit.benchmarks.media import MediaOptions, count_images, load_media
from datakit.errors import Rejected
from megatron_fleming.eval.backends import Backend
from megatron_fleming.eval.judge import Judge
from megatron_fleming.eval.metrics import cider
from megatron_fleming.eval.prompts import build_prompt
from megatron_fleming.eval.report import chart, markdown
from megatron_fleming.eval.scoring import ItemScore, score_item, wants_judge, with_judge
from megatron_fleming.eval.summary import summarise
from megatron_fleming.generate.requests import Request

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Responses:
    """What was asked and answered, per qid; ``errors`` names media that could not be read."""

    prompts: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def data_folder(data: Path, name: str, several: bool) -> Path:
    """``DATA/<name>`` when it exists, else ``DATA`` itself when only one benchmark is named."""
    if (data / name).is_dir():
        return data / name
    if several:
        raise FileNotFoundError(f"{data}: no {name}/ folder; with several benchmarks --data holds one folder each, "
                                "named as the benchmark")
    return data


def load(name: str, data: Path, split: str, several: bool, limit: int | None = None) -> BenchmarkRead:
    read = read_benchmark(name, data_folder(Path(data), name, several), split)
    return read if limit is None else BenchmarkRead(read.name, read.split, read.items[:limit], read.skipped)


def generate(items: Sequence[BenchItem], backend: Backend, media: MediaOptions = MediaOptions()) -> Responses:
    """Greedy responses of ``backend``, in item order; ``backend.items_per_call`` items' media in
    memory at once."""
    out = Responses()
    for start in range(0, len(items), backend.items_per_call):
        requests = []
        for item in items[start:start + backend.items_per_call]:
            try:
                images = tuple(im for _, im in load_media(item, media))
            except Rejected as e:
                out.errors[item.qid] = str(e)
                out.prompts[item.qid], out.texts[item.qid] = "", ""
                log.warning("%s %s: media not readable, scored as an empty response: %s", item.benchmark, item.qid, e)
                continue
            prompt = build_prompt(item, len(images))
            out.prompts[item.qid] = prompt
            frames = item.media_kind in ("volume", "video")  # one tile per slice / frame
            requests.append(Request(id=item.qid, prompt=prompt, images=images,
                                    modality=item.media_kind if frames else None))
        for request, text in zip(requests, backend.generate(requests)):
            out.texts[request.id] = text
    return out


def read_responses(path: Path, items: Sequence[BenchItem], media: MediaOptions = MediaOptions()) -> tuple[Responses, int]:
    """Responses from a JSON Lines file of ``{"id": ..., "response": "..."}`` (ids as the
    benchmark's own); (responses, how many items had none). Unknown or repeated ids are refused."""
    known = {item.qid for item in items}
    texts: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            qid, text = str(rec["id"]), rec["response"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{number}: expected {{\"id\": ..., \"response\": \"...\"}} ({e!r})") from e
        if qid not in known:
            raise ValueError(f"{path}:{number}: id {qid!r} is not a question of this benchmark split")
        if qid in texts:
            raise ValueError(f"{path}:{number}: id {qid!r} appears twice")
        texts[qid] = "" if text is None else str(text)
    out = Responses(texts=texts)
    for item in items:
        try:
            out.prompts[item.qid] = build_prompt(item, count_images(item, media))
        except Rejected as e:
            out.prompts[item.qid], out.errors[item.qid] = "", str(e)
    missing = sum(1 for item in items if item.qid not in texts)
    for item in items:
        out.texts.setdefault(item.qid, "")
    return out, missing


def score(read: BenchmarkRead, responses: Responses, judge: Judge | None, missing: int = 0) -> tuple[list[ItemScore], dict[str, Any], dict[str, float]]:
    """(per-item scores, summary, corpus CIDEr per generation task)."""
    items = read.items
    scores = [score_item(item, responses.texts[item.qid]) for item in items]
    if judge is not None:
        chosen = [k for k, item in enumerate(items) if wants_judge(item)]
        verdicts = judge.verdicts([(items[k], responses.texts[items[k].qid]) for k in chosen])
        for k, (verdict, detail) in zip(chosen, verdicts):
            scores[k] = with_judge(scores[k], verdict, detail)
    corpus: dict[str, float] = {}
    for task in ("report", "summary"):
        rows = [k for k, item in enumerate(items) if item.task == task]
        if rows:
            corpus[task], per_item = cider([responses.texts[items[k].qid] for k in rows], [items[k].answer for k in rows])
            for k, value in zip(rows, per_item):
                scores[k].metrics["cider"] = value
    judge_info = None if judge is None else {
        "model": judge.config.model, "prompt_version": judge.summary()["prompt_version"],
        "judged": sum(1 for s in scores if s.rule == "judge")}
    summary = summarise(read.name, read.split, items, scores, corpus_cider=corpus, skipped=read.skipped,
                        missing=missing, judge=judge_info)
    summary["media_errors"] = len(responses.errors)
    return scores, summary, corpus


def _item_row(item: BenchItem, score_: ItemScore, responses: Responses) -> dict[str, Any]:
    row = {"id": item.qid, "benchmark": item.benchmark, "task": item.task, "answer_type": item.answer_type,
           "lang": item.lang, "modality": item.modality, "question_type": item.extra.get("question_type"),
           "prompt": responses.prompts.get(item.qid, ""), "response": responses.texts[item.qid],
           "parsed": score_.parsed, "answer": item.answer, "answer_letter": item.answer_letter,
           "rule": score_.rule, "correct": score_.correct, "score": score_.score, "metrics": score_.metrics,
           "judge": score_.judge}
    if item.qid in responses.errors:
        row["media_error"] = responses.errors[item.qid]
    return row


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _jsonl(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def _json(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=1) + "\n"


def write_benchmark(out: Path, read: BenchmarkRead, responses: Responses, scores: Sequence[ItemScore],
                    summary: dict[str, Any]) -> None:
    folder = out / read.name
    _write(folder / "responses.jsonl", _jsonl([{"id": i.qid, "response": responses.texts[i.qid]} for i in read.items]))
    _write(folder / "items.jsonl", _jsonl([_item_row(i, s, responses) for i, s in zip(read.items, scores)]))
    _write(folder / "summary.json", _json(summary))


def write_totals(out: Path, summaries: dict[str, dict[str, Any]], judge: Judge | None, title: str) -> None:
    _write(out / "summary.json", _json({"benchmarks": summaries}))
    _write(out / "table3.md", markdown(summaries, title))
    chart(summaries, out / "table3.png", title)
    if judge is not None:
        _write(out / "judge.json", _json(judge.summary()))


def run(names: Sequence[str], data: Path, backend: Backend, out: Path, *, split: str = "test",
        judge: Judge | None = None, limit: int | None = None, run_info: dict[str, Any] | None = None,
        media: MediaOptions = MediaOptions(), write: bool = True) -> dict[str, dict[str, Any]]:
    """Generate for every named benchmark, then score and write them; returns the summaries.

    Every rank of a multi-rank backend calls this; one (``write``) scores and writes, the others
    only generate and return ``{}``. Scoring (and the judge) waits until all generation is done,
    so no rank sits in a collective while the writer scores."""
    reads, answered = {}, {}
    for name in names:
        reads[name] = read = load(name, data, split, len(names) > 1, limit)
        log.info("%s: %d items (%d released rows skipped)", name, len(read.items), len(read.skipped))
        answered[name] = generate(read.items, backend, media)
    if not write:
        return {}
    summaries = {}
    for name, read in reads.items():
        scores, summary, _ = score(read, answered[name], judge)
        write_benchmark(out, read, answered[name], scores, summary)
        summaries[name] = summary
    write_totals(out, summaries, judge, f"fleming eval run ({backend.name})")
    _write(out / "run.json", _json({"backend": backend.name, "benchmarks": list(names), "split": split,
                                    "limit": limit, **backend.info, **(run_info or {})}))
    return summaries


def score_responses(name: str, data: Path, responses_file: Path, out: Path, *, split: str = "test",
                    judge: Judge | None = None, media: MediaOptions = MediaOptions()) -> dict[str, Any]:
    """Score a responses file of any model on one benchmark; returns its summary."""
    read = load(name, data, split, False)
    responses, missing = read_responses(responses_file, read.items, media)
    scores, summary, _ = score(read, responses, judge, missing)
    write_benchmark(out, read, responses, scores, summary)
    write_totals(out, {name: summary}, judge, "fleming eval score")
    return summary

