"""MIMIC-CXR-VQA (Bae et al. 2023, ``baeseongsu/mimic-cxr-vqa``; PhysioNet credentialed DUA).

Released layout (``docs/corpora.md``): the repository ships answer-less
``mimiccxrvqa/dataset/_train_part{1,2}.json``; its ``build_dataset.sh`` (credentialed MIMIC-CXR-JPG,
Chest ImaGenome, MIMIC-IV) writes ``train.json``, ``valid.json``, ``test.json``. Images are
MIMIC-CXR-JPG's, under ``files/`` + each row's ``image_path``. This project's top folder::

    mimic-cxr-vqa/mimiccxrvqa/dataset/train.json
    mimic-cxr-vqa/mimic-cxr-jpg/files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg

A row (JSON list): ``idx``, ``subject_id``, ``study_id``, ``image_id``, ``image_path``,
``question``, ``semantic_type`` (verify/choose/query), ``content_type``, ``template``,
``answer`` (a sorted list of lower-case strings, ``[]`` when nothing qualifies, as
``dataset_builder/generate_answer.py`` writes it; the README calls it a string, which is read as a
one-item list).

Decisions:

* Train split only (``files``); one record per image with its questions in ``idx`` order, split
  by patient (``subject_id``), one one-turn sample per question (task ``vqa``): ``verify`` ->
  ``yes_no``, ``choose``/``query`` -> ``open``. The answer list is joined with ", "; an empty list
  is answered "none" (the question asked for findings and there are none), counted in the
  provenance as ``empty_answer_list``.
* Refused rows, named ``<file>[<index>]``: ``bad_json``, ``missing_answer`` (no ``answer`` key:
  the answer-less release files), ``missing_field`` (question or image path), ``bad_answer``
  (not a list of strings), ``missing_image``, ``bad_image_path``, ``missing_file``.
* Images are read through the one normalisation (``docs/normalisation.md``). Every file under the
  top folder is a manifest row: the listed JSON files are read; an image that only refused rows
  name is ``ignored`` as ``image_of_refused_row``; an image no row names (MIMIC-CXR-JPG holds far
  more than the VQA set asks about) as ``image_not_named``; another JSON file (``valid.json``,
  the answer-less release files) as ``file_not_selected``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.dialogues import (IMAGE_EXTS, JSON_EXTS, dialogue, load_dialogues, local_image, one_turn,
                                       read_json_rows)

QUESTION_TYPES = {"verify": "yes_no", "choose": "open", "query": "open"}
NONE_ANSWER = "none"


@register_source
class MimicCxrVqaReader(SourceReader):
    name = "mimic_cxr_vqa"
    modality = "xray"
    top_folder = "mimic-cxr-vqa"
    options: dict[str, Any] = {
        "files": ["mimiccxrvqa/dataset/train.json"],
        "images_dir": "mimic-cxr-jpg/files",
    }

    def _refuse(self, place: str, reason: str, detail: str = "") -> Rejection:
        return Rejection(source=self.name, record_id=place, path=place, reason=reason, detail=detail)

    def index_files(self) -> list[Path]:
        return [self.root / rel for rel in self.opts["files"]]

    def input_exts(self) -> frozenset[str]:
        return IMAGE_EXTS | JSON_EXTS

    def unclaimed(self, rel: PurePosixPath) -> tuple[str, str, str]:
        status, reason, detail = super().unclaimed(rel)
        if reason != "not_in_layout":
            return status, reason, detail
        if rel.suffix.lower() in JSON_EXTS:
            return "ignored", "file_not_selected", f"not one of the option files {self.opts['files']}"
        return "ignored", "image_not_named", "no row of the selected files asks about it"

    def _question(self, place: str, row: Any) -> tuple[Path, dict[str, Any], str] | Rejection:
        if not isinstance(row, dict):
            return self._refuse(place, "bad_json", "not a JSON object")
        if "answer" not in row:
            return self._refuse(place, "missing_answer", "no 'answer' key (an answer-less release file?)")
        question, image_rel = row.get("question"), row.get("image_path")
        if not isinstance(question, str) or not question.strip() or not isinstance(image_rel, str) or not image_rel:
            return self._refuse(place, "missing_field", "empty question or image_path")
        answer = row["answer"]
        answer = [answer] if isinstance(answer, str) else answer  # the README's form; generate_answer.py writes lists
        if not isinstance(answer, list) or not all(isinstance(a, str) for a in answer):
            return self._refuse(place, "bad_answer", f"answer {str(answer)[:60]} is not a list of strings")
        try:
            image = local_image(self.root / self.opts["images_dir"], image_rel, place)
        except Rejected as e:
            return self._refuse(place, e.reason, e.detail)
        if not image.is_file():
            return self._refuse(place, "missing_image", f"{self.opts['images_dir']}/{image_rel} not found")
        text = ", ".join(a.strip() for a in answer if a.strip()) or NONE_ANSWER
        qtype = QUESTION_TYPES.get(str(row.get("semantic_type")), "open")
        extra = {k: row[k] for k in ("idx", "semantic_type", "content_type", "template") if k in row}
        if not answer:
            extra["empty_answer_list"] = True
        facts = dialogue(one_turn(question, text), task="vqa", question_type=qtype, row=place, **extra)
        return image, facts, str(row.get("subject_id", ""))

    def discover(self) -> Iterator[RawRecord | Rejection]:
        grouped: dict[Path, list[tuple[Any, dict[str, Any]]]] = {}
        patient: dict[Path, str] = {}
        for rel in self.opts["files"]:
            if not (self.root / rel).is_file():
                yield self._refuse(rel, "missing_file", "listed in the option files")
                continue
            for place, row, reason, detail in read_json_rows(self.root / rel, rel):
                got = self._refuse(place, reason, detail) if row is None else self._question(place, row)
                if isinstance(got, Rejection):
                    self._set_aside_image(row, f"named by {place} ({got.reason})")
                    yield got
                    continue
                image, facts, subject = got
                order = facts["provenance"].get("idx", len(grouped.get(image, ())))
                grouped.setdefault(image, []).append(((str(type(order)), order), facts))
                patient.setdefault(image, subject)
        for image in sorted(grouped, key=lambda p: p.as_posix()):
            rel = image.relative_to(self.root).as_posix()
            questions = [facts for _, facts in sorted(grouped[image], key=lambda item: item[0])]
            yield RawRecord(source=self.name, record_id=Path(rel).stem, modality=self.modality, images=(image,),
                            meta={"dialogues": questions}, root=self.root, split_key=patient[image] or None)

    def _set_aside_image(self, row: Any, detail: str) -> None:
        """The image a refused row names, if it is on disk: ``image_of_refused_row`` unless a
        kept row names it too."""
        image_rel = row.get("image_path") if isinstance(row, dict) else None
        if isinstance(image_rel, str) and image_rel:
            try:
                image = local_image(self.root / self.opts["images_dir"], image_rel, "")
            except Rejected:
                return
            if image.is_file():
                self.set_aside(image, "image_of_refused_row", detail)

    def load(self, record: RawRecord) -> LoadedRecord:
        return load_dialogues(self, record, list(record.meta["dialogues"]))
