"""A medical video benchmark: video summary (ROUGE-L / CIDEr) and video multiple choice.

Fleming-VL reports a video benchmark built from MedVideoCap; it is not released, and no public
"MedVideoBench" exists (the nearest, UII-AI/MedVidBench, keeps its answers on a server). This
reader therefore defines a layout — MedHorizon's (MLV-Bench) one-record-per-video JSON Lines,
plus a ``summary`` field — that a MedVideoCap-derived test set can be written in::

    <root>/medvideo_<split>.jsonl     (MedHorizon's own name mlvbench_<split>.jsonl is read too)
    <root>/videos/...                 ``video_path`` is relative to <root>

One JSON object a line::

    {"key": "clip_0001", "video_path": "videos/clip_0001.mp4",
     "summary": "<reference summary, e.g. MedVideoCap's detailed caption>",      (optional)
     "qa": [{"question": "...", "options": ["...", "..."], "answer": "B"}, ...],  (optional)
     "split": "test", "lang": "en", "organ": "...", "scene_type": "..."}           (optional)

``options`` may be a list of texts (letters may prefix them: ``"B. Colonoscopy"``) or an object
``{"A": "...", ...}``; ``answer`` is a letter or the right option's text. A record whose
``split`` differs from the one asked for is passed over. Items: ``<key>#summary`` (task
``summary``) and ``<key>#qa<i>`` (task ``mcq``), in file order. Clips are sampled at one frame
per second (``datakit.video``) when the model sees them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from datakit.benchmarks.items import LETTERS, BenchItem, BenchmarkLayoutError, as_text, check_split, require

NAME = "medvideo"
SPLITS = ("test", "val", "train")
_PREFIX = re.compile(r"^\s*\(?([A-H])\s*[.:)]\s+")


def jsonl_file(root: Path, split: str) -> Path:
    check_split(NAME, split, SPLITS)
    for name in (f"medvideo_{split}.jsonl", f"mlvbench_{split}.jsonl"):
        if (root / name).is_file():
            return root / name
    raise BenchmarkLayoutError(f"{root}: no medvideo_{split}.jsonl (or mlvbench_{split}.jsonl); see "
                               "datakit/benchmarks/medvideo.py for the layout")


def _options(raw, where: str) -> list[str]:
    if isinstance(raw, dict):
        keys = sorted(raw)
        if keys != list(LETTERS[: len(keys)]):
            raise BenchmarkLayoutError(f"{where}: option keys {keys} are not A, B, ...")
        return [as_text(raw[k]) for k in keys]
    if isinstance(raw, list):
        return [_PREFIX.sub("", as_text(o), count=1) for o in raw]
    raise BenchmarkLayoutError(f"{where}: options must be a list or an object, got {type(raw).__name__}")


def _answer_index(answer: str, options: list[str], where: str) -> int:
    if len(answer) == 1 and answer.upper() in LETTERS[: len(options)]:
        return LETTERS.index(answer.upper())
    text = _PREFIX.sub("", answer, count=1).casefold()
    hits = [i for i, o in enumerate(options) if o.casefold() == text]
    if len(hits) != 1:
        raise BenchmarkLayoutError(f"{where}: answer {answer!r} names no single option of {options}")
    return hits[0]


def read(root: Path, split: str = "test") -> list[BenchItem]:
    root = Path(root)
    path = jsonl_file(root, split)
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise BenchmarkLayoutError(f"{where}: not JSON ({e})") from e
        require(rec, ("key", "video_path"), where)
        if rec.get("split", split) != split:
            continue
        key, lang = as_text(rec["key"]), rec.get("lang", "en")
        common = dict(benchmark=NAME, split=split, media=(root / str(rec["video_path"]),), media_kind="video",
                      lang=lang, modality="video", root=root,
                      extra={k: rec[k] for k in ("organ", "scene_type", "dataset") if k in rec})
        if as_text(rec.get("summary")):
            items.append(BenchItem(qid=f"{key}#summary", task="summary", question="",
                                   answer=as_text(rec["summary"]), **common))
        for i, qa in enumerate(rec.get("qa") or []):
            require(qa, ("question", "options", "answer"), f"{where} qa[{i}]")
            options = _options(qa["options"], f"{where} qa[{i}]")
            k = _answer_index(as_text(qa["answer"]), options, f"{where} qa[{i}]")
            items.append(BenchItem(qid=f"{key}#qa{i}", task="mcq", question=as_text(qa["question"]),
                                   answer=options[k], options=tuple(options), answer_letter=LETTERS[k], **common))
        if not as_text(rec.get("summary")) and not rec.get("qa"):
            raise BenchmarkLayoutError(f"{where}: a record needs a summary, questions (qa), or both")
    return items
