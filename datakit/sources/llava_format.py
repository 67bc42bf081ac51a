"""The LLaVA conversation format, as PubMedVision, LLaVA-Med and Quilt-LLaVA release it.

A JSON list (or JSON Lines) of ``{"id": ..., "image": "x.jpg" | ["a.jpg", ...],
"conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", ...}, ...]}``,
images in a local folder (downloaded or unzipped there by the release's own script). Each
reader lists its files with the task their conversations feed (``caption`` for alignment /
pretraining captions, ``instruction`` for instruction tuning) in the option ``files``::

    files: [{file: PubMedVision_InstructionTuning_VQA.json, task: instruction, images_dir: "."}]

Decisions (every refused row is one manifest rejection named ``<file>[<index>]`` or
``<file>:<line>``):

* One record per row, id ``<file stem>/<row id>``; the conversation passes through as it is
  (multi-turn kept), checked by ``dialogues.check_turns`` (``empty_conversation``,
  ``bad_conversation``, ``image_token_mismatch``).
* Rows: ``bad_json`` / ``non_utf8`` (a malformed line or file), ``missing_id``,
  ``duplicate_id``, ``no_image``, ``url_only_image`` (the row names a URL, not a file),
  ``bad_image_path``, ``missing_image`` (not downloaded; the detail says where from when the
  release has a URL list), ``missing_file`` (a listed file is absent).
* Records that share an image share a split key, so they never straddle train and val.
* Images are read through the one normalisation (``docs/normalisation.md``): ``max_pixels`` and
  ``max_side`` hold, and an unreadable image refuses its row at load (``corrupt_image``...).
* Every file under the top folder is a manifest row: the selected files and the URL list are
  read; an image that only refused rows name is ``ignored`` as ``image_of_refused_row`` (the
  detail names the row and its reason); an image no row of the selected files names is
  ``ignored`` as ``image_not_named`` (these folders are shared by several files of a release,
  alignment and instruction data); a JSON file the option ``files`` does not list is
  ``ignored`` as ``file_not_selected``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.sample import LANGS
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.dialogues import (IMAGE_EXTS, JSON_EXTS, check_turns, dialogue, load_dialogues, local_image,
                                       read_json_rows)

QUESTION_TYPE = {"caption": "caption", "instruction": "open"}
_FILE_KEYS = {"file", "task", "images_dir", "lang"}


class LlavaFormatReader(SourceReader):
    """Base of the LLaVA-format readers; subclasses set name, modality, top folder, defaults."""

    options: dict[str, Any] = {
        "files": [],
        "id_field": "id",
        "image_field": "image",
        "conversations_field": "conversations",
        "keep_fields": [],  # row fields copied into each sample's provenance
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        files = self.opts["files"]
        if not isinstance(files, list) or not files:
            raise ValueError(f"source {self.name}: option files must be a non-empty list of "
                             "{file, task, images_dir[, lang]}")
        for i, entry in enumerate(files):
            where = f"source {self.name}: files[{i}]"
            if not isinstance(entry, dict) or not {"file", "task", "images_dir"} <= set(entry) \
                    or set(entry) - _FILE_KEYS:
                raise ValueError(f"{where} must be a mapping with keys file, task, images_dir (and lang)")
            if entry["task"] not in QUESTION_TYPE:
                raise ValueError(f"{where}.task {entry['task']!r}: use one of {sorted(QUESTION_TYPE)}")
            if entry.get("lang", "en") not in LANGS:
                raise ValueError(f"{where}.lang {entry.get('lang')!r} not in {sorted(LANGS)}")

    def index_files(self) -> list[Path]:
        return [self.root / entry["file"] for entry in self.opts["files"]]

    def input_exts(self) -> frozenset[str]:
        return IMAGE_EXTS | JSON_EXTS

    def unclaimed(self, rel: PurePosixPath) -> tuple[str, str, str]:
        status, reason, detail = super().unclaimed(rel)
        if reason != "not_in_layout":
            return status, reason, detail
        if rel.suffix.lower() in JSON_EXTS:
            listed = [entry["file"] for entry in self.opts["files"]]
            return "ignored", "file_not_selected", f"not one of the option files {listed}"
        return "ignored", "image_not_named", "no row of the selected files names it (another file of the release may)"

    def image_hint(self, image: str) -> str:
        """Where a missing image comes from (a URL list), for the rejection detail."""
        return ""

    def discover(self) -> Iterator[RawRecord | Rejection]:
        for entry in self.opts["files"]:
            yield from self._discover_file(entry)

    def _refuse(self, place: str, reason: str, detail: str = "") -> Rejection:
        return Rejection(source=self.name, record_id=place, path=place, reason=reason, detail=detail)

    def _discover_file(self, entry: dict[str, Any]) -> Iterator[RawRecord | Rejection]:
        rel = entry["file"]
        path = self.root / rel
        if not path.is_file():
            yield self._refuse(rel, "missing_file", "listed in the option files")
            return
        o = self.opts
        seen: set[str] = set()
        stem = PurePosixPath(rel).name.split(".")[0]
        for place, row, reason, detail in read_json_rows(path, rel):
            if row is None:
                yield self._refuse(place, reason, detail)
                continue
            if not isinstance(row, dict):
                yield self._refuse(place, "bad_json", "not a JSON object")
                continue
            row_id = str(row.get(o["id_field"]) or "").strip()
            if not row_id:
                yield self._refuse(place, "missing_id", f"no {o['id_field']!r}")
                continue
            if row_id in seen:
                yield self._refuse(place, "duplicate_id", f"id {row_id!r} appears earlier in {rel}")
                continue
            seen.add(row_id)
            yield self._record(entry, f"{stem}/{row_id}", place, row)

    def _record(self, entry: dict[str, Any], record_id: str, place: str, row: dict[str, Any]) -> RawRecord | Rejection:
        names = row.get(self.opts["image_field"])
        names = [names] if isinstance(names, str) else names
        if not names or not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            return self._refuse(place, "no_image", f"{self.opts['image_field']!r} is {str(names)[:60]}")
        images_dir = self.root / entry["images_dir"]
        images: list[Path] = []
        refusal: Rejection | None = None
        for name in names:
            try:
                image = local_image(images_dir, name.strip(), place)
            except Rejected as e:
                refusal = self._refuse(place, e.reason, e.detail)
                break
            if not image.is_file():
                hint = self.image_hint(name.strip())
                refusal = self._refuse(place, "missing_image", f"{Path(entry['images_dir'], name.strip()).as_posix()} "
                                                               "not found" + (f"; {hint}" if hint else ""))
                break
            images.append(image)
        if refusal is None:
            turns = check_turns(row.get(self.opts["conversations_field"]), len(images))
            if isinstance(turns, tuple):
                refusal = self._refuse(place, *turns)
        if refusal is not None:
            for image in images:
                self.set_aside(image, "image_of_refused_row", f"named by {place} ({refusal.reason})")
            return refusal
        kept = {f: row[f] for f in self.opts["keep_fields"] if f in row}
        task = entry["task"]
        facts = dialogue(turns, task=task, question_type=QUESTION_TYPE[task], row=place,
                         lang=entry.get("lang", "en"), **kept)
        rels = [p.relative_to(self.root).as_posix() for p in images]
        return RawRecord(source=self.name, record_id=record_id, modality=self.modality, images=tuple(images),
                         meta={"dialogue": facts}, root=self.root, split_key="|".join(rels))

    def load(self, record: RawRecord) -> LoadedRecord:
        return load_dialogues(self, record, [dict(record.meta["dialogue"])])

