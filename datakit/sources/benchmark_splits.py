"""Training sources on an evaluation benchmark's train split (VQA-RAD, SLAKE, PathVQA, PMC-VQA,
IU-Xray and MIMIC-CXR reports).

These releases hold their train and test splits side by side. Their layouts are parsed once, by
the split-agnostic readers of ``datakit.benchmarks`` that evaluation and ``datakit decontam add
--benchmark`` use, so training and evaluation agree on every question, answer and image. A reader
here asks its benchmark module for the splits of the option ``splits`` (default ``[train]``; the
test split, and VQA-RAD's ``all`` which holds it, are refused: that is what evaluation scores).

Decisions:

* One record per distinct image set (one image for VQA, a study's views for reports): every
  question on an image is one dedup, split and decontamination unit. Where a release's train and
  test share images (VQA-RAD, SLAKE; PathVQA's train and test folders hold identical pictures),
  a build checked against the registered benchmarks (``datakit decontam add NAME DIR
  --benchmark NAME``) drops those records as ``contaminated``, naming the benchmark file.
* VQA items become one-turn dialogues (task ``vqa``, the ``conversations`` converter): the
  question as released, the answer as released (numbers as text); ``yes_no`` when the answer is
  yes/no (是/否), else ``open``; multiple choice (PMC-VQA) lists the options one a line as
  ``A. text`` with the project's letter instruction, the reply ``B. text``, question type
  ``mcq``. The language is the item's (SLAKE's Chinese questions stay Chinese).
* Report items (IU-Xray, MIMIC-CXR in R2Gen's ``annotation.json``) become report texts for the
  ``captions`` converter (task ``report``, ``texts: {report: report}``), which words the request
  and filters the text like every clinical note.
* Refused, one row each: ``bad_layout`` (the benchmark reader refused the split's file as a
  whole; the detail is its message, naming file and row), ``row_not_an_item`` (a released row the
  benchmark reader skips), ``missing_image`` (named ``<file>#<qid>``), ``duplicate_images`` (a
  second report entry for the same images).
* Every file under the top folder is a manifest row: the split files read are index files; an
  image only other splits name is ``ignored`` as ``other_split_image``; an image no split names as
  ``image_not_named``; another split's file as ``file_not_selected``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from datakit.benchmarks import BenchItem, BenchmarkLayoutError, module, read_benchmark
from datakit.benchmarks.items import LETTERS
from datakit.converters.templates import vocabulary
from datakit.record import LoadedRecord, RawRecord
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.dialogues import IMAGE_EXTS, dialogue, load_dialogues, one_turn, yes_no_or_open
from datakit.sources.roco_v2 import caption_facts

HELD_OUT = ("test", "all")  # evaluation's split, and VQA-RAD's split that contains it


class BenchmarkSplitReader(SourceReader):
    """Base of the readers on a benchmark's train split; subclasses set name, modality,
    top_folder, ``benchmark`` (a ``datakit.benchmarks`` module) and ``split_files``."""

    benchmark: ClassVar[str]
    options: dict[str, Any] = {"splits": ["train"]}

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        splits, known = self.opts["splits"], module(self.benchmark).SPLITS
        if not isinstance(splits, list) or not splits or not all(isinstance(s, str) for s in splits):
            raise ValueError(f"source {self.name}: option splits must be a non-empty list of split names")
        for split in splits:
            if split in HELD_OUT:
                raise ValueError(f"source {self.name}: split {split!r} holds the evaluation questions; "
                                 "train on " + ", ".join(s for s in known if s not in HELD_OUT))
            if split not in known:
                raise ValueError(f"source {self.name}: split {split!r} is not one of {list(known)}")

    def split_files(self, split: str) -> list[Path]:
        """The released files that hold ``split``'s rows (for naming rows and for the walk)."""
        raise NotImplementedError

    def index_files(self) -> list[Path]:
        return [p for split in self.opts["splits"] for p in self.split_files(split)]

    def input_exts(self) -> frozenset[str]:
        return IMAGE_EXTS | {p.suffix.lower() for split in module(self.benchmark).SPLITS
                             for p in self._split_files_or_none(split)}

    def _split_files_or_none(self, split: str) -> list[Path]:
        try:
            return self.split_files(split)
        except BenchmarkLayoutError:
            return []

    def unclaimed(self, rel: PurePosixPath) -> tuple[str, str, str]:
        status, reason, detail = super().unclaimed(rel)
        if reason != "not_in_layout":
            return status, reason, detail
        if rel.suffix.lower() in IMAGE_EXTS:
            return "ignored", "image_not_named", "no question of any split names it"
        return "ignored", "file_not_selected", f"not a file of the splits read ({self.opts['splits']})"

    def _place(self, split: str, item: BenchItem) -> str:
        files = self._split_files_or_none(split)
        return f"{files[0].relative_to(self.root).as_posix() if files else split}#{item.qid}"

    def discover(self) -> Iterator[RawRecord | Rejection]:
        groups: dict[tuple[Path, ...], list[tuple[str, BenchItem]]] = {}
        for split in self.opts["splits"]:
            try:
                read = read_benchmark(self.benchmark, self.root, split)
            except BenchmarkLayoutError as e:
                where = self._split_files_or_none(split)
                yield self.reject(split, where[0] if where else self.root / split, "bad_layout", str(e))
                continue
            for where, why in read.skipped:
                yield Rejection(source=self.name, record_id=where, path=where, reason="row_not_an_item", detail=why)
            for item in read.items:
                place = self._place(split, item)
                missing = [p for p in item.media if not p.is_file()]
                if missing:
                    yield Rejection(source=self.name, record_id=place, path=place, reason="missing_image",
                                    detail=f"{item.media_labels[item.media.index(missing[0])]} not found")
                    continue
                groups.setdefault(item.media, []).append((place, item))
        self._set_aside_other_splits()
        for media in sorted(groups, key=lambda m: [p.as_posix() for p in m]):
            yield from self.records(media, groups[media])

    def _set_aside_other_splits(self) -> None:
        """Images that only the splits this build does not read name: ``other_split_image``."""
        others: dict[Path, list[str]] = {}
        for split in module(self.benchmark).SPLITS:
            if split in self.opts["splits"]:
                continue
            try:
                items = read_benchmark(self.benchmark, self.root, split).items
            except (BenchmarkLayoutError, ValueError):
                continue
            for item in items:
                for path in item.media:
                    others.setdefault(path, []).append(split)
        for path, splits in others.items():
            named = sorted(set(splits) - {"all"}) or ["all"]
            self.set_aside(path, "other_split_image", f"named only by the {', '.join(named)} split of {self.benchmark}")

    def records(self, media: tuple[Path, ...], items: list[tuple[str, BenchItem]]) -> Iterator[RawRecord | Rejection]:
        """One record of the questions on one image set (subclasses: reports)."""
        dialogues = [self._dialogue(place, item) for place, item in items]
        yield self._record(media, {"dialogues": dialogues})

    def _record(self, media: tuple[Path, ...], meta: dict[str, Any]) -> RawRecord:
        rels = [p.relative_to(self.root).as_posix() for p in media]
        return RawRecord(source=self.name, record_id="|".join(rels), modality=self.modality, images=media,
                         meta=meta, root=self.root)

    def _dialogue(self, place: str, item: BenchItem) -> dict[str, Any]:
        facts = {"benchmark": item.benchmark, "qid": item.qid, "split": item.split,
                 **({"answer_type": item.answer_type} if item.answer_type else {})}
        if item.task == "mcq":
            lines = [f"{letter}. {text}" for letter, text in zip(LETTERS, item.options)]
            question = "\n".join([item.question, *lines, vocabulary().phrase("mcq_instruction", item.lang)])
            reply = f"{item.answer_letter}. {item.answer}"
            return dialogue(one_turn(question, reply, len(item.media)), task="vqa", question_type="mcq", row=place,
                            answer=item.answer_letter, options=list(item.options), lang=item.lang, **facts)
        return dialogue(one_turn(item.question, item.answer, len(item.media)), task="vqa",
                        question_type=yes_no_or_open(item.answer), row=place, lang=item.lang, **facts)

    def load(self, record: RawRecord) -> LoadedRecord:
        return load_dialogues(self, record, list(record.meta["dialogues"]))


class ReportSplitReader(BenchmarkSplitReader):
    """Report generation (R2Gen's ``annotation.json``): one record per study, its report the
    text the ``captions`` converter answers with."""

    def split_files(self, split: str) -> list[Path]:
        return [self.root / "annotation.json"]

    def records(self, media: tuple[Path, ...], items: list[tuple[str, BenchItem]]) -> Iterator[RawRecord | Rejection]:
        (place, item), *again = items
        for other, _ in again:
            yield Rejection(source=self.name, record_id=other, path=other, reason="duplicate_images",
                            detail=f"the same images as {place}")
        yield self._record(media, {"report": item.answer, "row": place, "qid": item.qid, "split": item.split})

    def load(self, record: RawRecord) -> LoadedRecord:
        media, sums = [], {}
        for path in record.images:
            image = self.read_image(record, path)
            media.append(image.media)
            sums[record.rel(path)] = image.file_sha256
        facts = caption_facts({"report": record.meta["report"]}, text_origin={"report": record.meta["row"]})
        return LoadedRecord(record=record, media=media, facts=facts, file_sha256=sums)
