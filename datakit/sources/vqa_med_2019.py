"""VQA-Med-2019 (ImageCLEF 2019, Ben Abacha et al.; Zenodo 10499039, CC BY 4.0): radiology
questions about modality, plane, organ system and abnormality.

Released layout (``docs/corpora.md``), the training set::

    VQA-Med-2019/ImageClef-2019-VQA-Med-Training/All_QA_Pairs_train.txt      id|question|answer
    VQA-Med-2019/ImageClef-2019-VQA-Med-Training/QAPairsByCategory/C1_Modality_train.txt, C2_Plane_,
                                                  C3_Organ_, C4_Abnormality_ (same format)
    VQA-Med-2019/ImageClef-2019-VQA-Med-Training/Train_images/synpicNNNNN.jpg

Text files are ``|``-separated with no header; ``id`` names ``<id>.jpg``. Only the training set is
read (train splits only: validation and test are the challenge's evaluation sets; the option
``split_dir`` and friends point elsewhere if wanted).

Decisions:

* One record per image holding its questions in file order (one dedup and split unit); each
  question becomes a one-turn sample (task ``vqa``): ``yes_no`` when the answer is yes or no,
  else ``open``. Its category (modality/plane/organ/abnormality) comes from the per-category files
  and goes into the provenance; a pair no category file lists keeps ``category: null``.
* Refused rows, named ``<file>:<line>``: ``malformed_row`` (not three ``|`` fields),
  ``non_utf8``, ``missing_answer``/``missing_question`` (empty field), ``duplicate_row`` (the same
  image and question again), ``missing_image``. An image no row names is
  ``image_without_questions``; an absent QA file is ``missing_file``.
* An answer holding ``#`` (the test references' separator of accepted answers) keeps its first
  alternative.
* Images are read through the one normalisation (``docs/normalisation.md``). Every file under the
  top folder is a manifest row: the QA and category files are read; a file outside ``split_dir``
  (the validation or test set) is ``ignored`` as ``file_not_selected``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader, natural_key
from datakit.sources.dialogues import dialogue, load_dialogues, one_turn, yes_no_or_open

CATEGORIES = {"modality": "C1_Modality", "plane": "C2_Plane", "organ": "C3_Organ", "abnormality": "C4_Abnormality"}


def read_pipe_rows(path: Path, rel: str) -> Iterator[tuple[str, tuple[str, str, str] | None, str, str]]:
    """``(place, (id, question, answer) | None, reason, detail)`` for each non-blank line."""
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        place = f"{rel}:{number}"
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield place, None, "non_utf8", f"byte {e.start}: {e.reason}"
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 3:
            yield place, None, "malformed_row", f"{len(fields)} '|'-separated fields, expected id|question|answer"
            continue
        image_id, question, answer = fields
        if not image_id or not question:
            yield place, None, "missing_question", "empty id or question"
        elif not answer:
            yield place, None, "missing_answer", f"{image_id}: empty answer"
        else:
            yield place, (image_id, question, answer.split("#")[0].strip()), "", ""


@register_source
class VqaMed2019Reader(SourceReader):
    name = "vqa_med_2019"
    modality = "radiology"
    top_folder = "VQA-Med-2019"
    options: dict[str, Any] = {
        "split_dir": "ImageClef-2019-VQA-Med-Training",
        "pairs_file": "All_QA_Pairs_train.txt",
        "category_file": "QAPairsByCategory/{prefix}_train.txt",
        "images_dir": "Train_images",
        "image_ext": ".jpg",
    }

    def _refuse(self, place: str, reason: str, detail: str = "") -> Rejection:
        return Rejection(source=self.name, record_id=place, path=place, reason=reason, detail=detail)

    def index_files(self) -> list[Path]:
        split_dir = self.root / self.opts["split_dir"]
        return [split_dir / self.opts["pairs_file"],
                *(split_dir / self.opts["category_file"].format(prefix=p) for p in CATEGORIES.values())]

    def unclaimed(self, rel: PurePosixPath) -> tuple[str, str, str]:
        status, reason, detail = super().unclaimed(rel)
        split_dir = PurePosixPath(self.opts["split_dir"])
        if reason in ("not_in_layout", "unknown_extension") and split_dir not in rel.parents:
            return "ignored", "file_not_selected", f"outside {split_dir}/ (the option split_dir: train split only)"
        return status, reason, detail

    def _categories(self, split_dir: str) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        for category, prefix in CATEGORIES.items():
            rel = f"{split_dir}/{self.opts['category_file'].format(prefix=prefix)}"
            if (self.root / rel).is_file():
                for _, row, _, _ in read_pipe_rows(self.root / rel, rel):
                    if row is not None:
                        found.setdefault((row[0], row[1]), category)
        return found

    def discover(self) -> Iterator[RawRecord | Rejection]:
        o = self.opts
        split_dir = o["split_dir"]
        base = self.root / split_dir
        rel = f"{split_dir}/{o['pairs_file']}"
        if not (self.root / rel).is_file():
            yield self._refuse(rel, "missing_file", "the QA pairs file")
            return
        images_dir, ext = base / o["images_dir"], o["image_ext"]
        on_disk = {p.name[: -len(ext)]: p for p in images_dir.glob(f"*{ext}")} if images_dir.is_dir() else {}
        category = self._categories(split_dir)
        questions: dict[str, list[dict[str, Any]]] = {}
        seen: dict[tuple[str, str], str] = {}
        for place, row, reason, detail in read_pipe_rows(self.root / rel, rel):
            if row is None:
                yield self._refuse(place, reason, detail)
                continue
            image_id, question, answer = row
            if (image_id, question) in seen:
                yield self._refuse(place, "duplicate_row", f"same image and question as {seen[(image_id, question)]}")
                continue
            seen[(image_id, question)] = place
            if image_id not in on_disk:
                yield self._refuse(place, "missing_image", f"{split_dir}/{o['images_dir']}/{image_id}{ext} not found")
                continue
            questions.setdefault(image_id, []).append(dialogue(
                one_turn(question, answer), task="vqa", question_type=yes_no_or_open(answer), row=place,
                category=category.get((image_id, question))))
        for image_id in sorted(on_disk, key=natural_key):
            path = on_disk[image_id]
            if image_id not in questions:
                yield self.reject(image_id, path, "image_without_questions")
                continue
            yield RawRecord(source=self.name, record_id=image_id, modality=self.modality, images=(path,),
                            meta={"dialogues": questions[image_id]}, root=self.root)

    def load(self, record: RawRecord) -> LoadedRecord:
        return load_dialogues(self, record, list(record.meta["dialogues"]))
