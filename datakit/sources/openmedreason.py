"""OpenMedReason (Baghbanzadeh et al. 2026, HF ``I4Health/OpenMedReason``, CC BY 4.0): exam-style
multiple-choice questions on biomedical figures with an image-grounded chain of thought.

Released layout (``docs/corpora.md``; the dataset card's ``configs``)::

    OpenMedReason/data/train-*.parquet      columns image {bytes, path}, question, reasoning,
    OpenMedReason/data/test-*.parquet       answer (+ perception/knowledge/rationale, test only)

``question`` is the stem followed by lettered options (``A. ...``), ``reasoning`` the trace as
``<think>...</think><answer>X</answer>``, ``answer`` the correct letter; images are embedded
JPEG bytes. It gives the stage-3 CoT samples without an LLM endpoint.

Decisions:

* Train files only (``files`` glob); one record per row, id ``<file stem>:<row>``; one sample
  (task ``cot``, question type ``mcq``): the question as released plus the CoT instruction, the
  reply in the shared CoT form (``datakit.cot``).
* Refused rows, named ``<file>:<row>``: ``missing_field`` (empty question, reasoning or answer),
  ``no_options`` (fewer than two lettered options), ``answer_not_an_option``, ``bad_reasoning``
  (no final letter can be read), ``answer_mismatch`` (the trace's letter is not ``answer``),
  and at load ``missing_image`` (an empty image cell), ``corrupt_image``/``truncated_image``. A
  file without the columns is ``bad_parquet`` as a whole. The provenance names the parquet file,
  its sha256 and the row.
* The embedded image bytes go through the one normalisation (``docs/normalisation.md``,
  ``datakit.normalise.normalise_image_bytes``): PNG/JPEG kept as they are when nothing needs
  changing, ``max_pixels``/``max_side`` honoured, ``provenance.normalisation`` recorded.
* Every file under the top folder is a manifest row: the train parquet files are read; another
  parquet file (the test split) is ``ignored`` as ``file_not_selected``.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

from datakit.cot import COT_INSTRUCTION, LETTERS, parse_reply, render_reply, split_options
from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sample import IMAGE_TOKEN
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.dialogues import dialogue

COLUMNS = ("image", "question", "reasoning", "answer")


@register_source
class OpenMedReasonReader(SourceReader):
    name = "openmedreason"
    modality = "biomedical"
    top_folder = "OpenMedReason"
    options: dict[str, Any] = {"files": "data/train-*.parquet"}

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._files: dict[Path, Any] = {}  # path -> (ParquetFile, first row of each row group, sha256)

    def _refuse(self, place: str, reason: str, detail: str = "") -> Rejection:
        return Rejection(source=self.name, record_id=place, path=place, reason=reason, detail=detail)

    def index_files(self) -> list[Path]:
        return sorted(self.root.glob(self.opts["files"]))

    def input_exts(self) -> frozenset[str]:
        return frozenset({".parquet"})

    def unclaimed(self, rel: PurePosixPath) -> tuple[str, str, str]:
        status, reason, detail = super().unclaimed(rel)
        if reason == "not_in_layout" and not fnmatch(rel.as_posix(), self.opts["files"]):
            return "ignored", "file_not_selected", f"does not match the option files {self.opts['files']!r} (train only)"
        return status, reason, detail

    def discover(self) -> Iterator[RawRecord | Rejection]:
        import pyarrow.parquet as pq

        files = self.index_files()
        if not files:
            yield self._refuse(self.opts["files"], "missing_file", "no parquet file matches the option files")
        for path in files:
            rel = path.relative_to(self.root).as_posix()
            try:
                pf = pq.ParquetFile(path)
                missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
                if missing:
                    yield self._refuse(rel, "bad_parquet", f"missing column(s) {missing}")
                    continue
                rows = pf.read(columns=["question", "reasoning", "answer"]).to_pylist()
            except Exception as e:  # pyarrow raises several types for a damaged file
                yield self._refuse(rel, "bad_parquet", f"{type(e).__name__}: {e}")
                continue
            for index, row in enumerate(rows):
                yield self._row(rel, index, row, path)

    def _row(self, rel: str, index: int, row: dict[str, Any], path: Path) -> RawRecord | Rejection:
        place = f"{rel}:{index}"
        question, reasoning = (row.get("question") or "").strip(), (row.get("reasoning") or "").strip()
        answer = (row.get("answer") or "").strip().upper()
        if not (question and reasoning and answer):
            return self._refuse(place, "missing_field", "empty question, reasoning or answer")
        parsed = split_options(question)
        if parsed is None:
            return self._refuse(place, "no_options", "fewer than two lettered options (A. ..., B. ...)")
        options = parsed[1]
        if answer not in LETTERS[: len(options)]:
            return self._refuse(place, "answer_not_an_option", f"answer {answer!r} for {len(options)} options")
        reply = parse_reply(reasoning)
        if reply is None:
            return self._refuse(place, "bad_reasoning", "no <think>...</think><answer>X</answer> and no final letter")
        if reply[1] != answer:
            return self._refuse(place, "answer_mismatch", f"the reasoning concludes {reply[1]}, the answer is {answer}")
        conversation = [{"from": "human", "value": f"{IMAGE_TOKEN}\n{question}\n{COT_INSTRUCTION['en']}"},
                        {"from": "gpt", "value": render_reply(reply[0], answer)}]
        facts = dialogue(conversation, task="cot", question_type="mcq", row=place, answer=answer, options=options)
        return RawRecord(source=self.name, record_id=place, modality=self.modality, images=(path,),
                         meta={"dialogue": facts, "row": index}, root=self.root)

    def _open(self, path: Path) -> tuple[Any, list[int], str]:
        """The parquet file, the first row index of each of its row groups and its sha256, read
        once per reader (a slice's records come from few files)."""
        import pyarrow.parquet as pq

        if path not in self._files:
            pf = pq.ParquetFile(path)
            starts, n = [], 0
            for g in range(pf.num_row_groups):
                starts.append(n)
                n += pf.metadata.row_group(g).num_rows
            self._files[path] = (pf, starts, hashlib.sha256(path.read_bytes()).hexdigest())
        return self._files[path]

    def load(self, record: RawRecord) -> LoadedRecord:
        path, index = record.images[0], record.meta["row"]
        rel = record.rel(path)
        where = f"{rel}:{index}"
        try:
            pf, starts, digest = self._open(path)
            group = bisect.bisect_right(starts, index) - 1
            cell = pf.read_row_group(group, columns=["image"]).column("image")[index - starts[group]].as_py()
        except Exception as e:  # the file changed or broke since discovery
            raise Rejected("bad_parquet", where, f"{type(e).__name__}: {e}") from e
        data = cell.get("bytes") if isinstance(cell, dict) else cell
        if not data:
            raise Rejected("missing_image", where, "the image cell holds no bytes")
        image = self.read_image_bytes(bytes(data), where)
        return LoadedRecord(record=record, media=[image.media], facts={"dialogues": [dict(record.meta["dialogue"])]},
                            file_sha256={rel: digest})
