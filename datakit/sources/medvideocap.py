"""MedVideoCap-55K, medical video clips with a brief and a detailed caption (Wang et al. 2025,
``FreedomIntelligence/MedVideoCap-55K``; 55,803 clips, 720×480, about 8 s each).

The released file layout is UNCONFIRMED (``notes/source-layouts.md`` section 13: no public
reader or file listing was found), so every name here is an option. The default assumes::

    MedVideoCap-55K/captions.jsonl        one JSON object a line:
                                          {"id": ..., "brief_caption": ..., "detailed_caption": ...
                                           [, "video": <path relative to the top folder>]}
    MedVideoCap-55K/videos/<id>.mp4

``captions_file`` may also be a ``.json`` list of such objects or a ``.csv`` with those
columns; ``video_pattern`` names a clip from its id when a row has no ``video`` field.

Decisions:

* One record per caption row, id ``<id>``. Rows that cannot form a record are refused at
  discovery, named ``captions.jsonl:<line>`` (``[<index>]`` for a JSON list): ``bad_json``,
  ``non_utf8``, ``missing_id``, ``duplicate_id``, ``missing_caption`` (both captions empty),
  ``missing_video_file``. A clip under the videos folder that no row names is refused as
  ``video_without_caption``, so every file is accounted for.
* The detailed caption is ``RawRecord.text`` (the LLM's video multiple-choice task reads it);
  the brief one is kept in the record's meta.
* Clips are decoded and sampled by ``datakit.video`` (1 frame per second as the Fleming-VL demo,
  ``max_frames`` cap; frames stored as images unless ``store: clip``); a broken or truncated clip
  is rejected at load with the reason.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.video import FrameOptions, read_video

Row = tuple[str, dict[str, Any] | None, str]  # (place, fields or None, why not)


def _jsonl_rows(data: bytes, name: str) -> Iterator[Row]:
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        place = f"{name}:{number}"
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            yield place, None, f"non_utf8|byte {e.start}: {e.reason}"
            continue
        except ValueError as e:
            yield place, None, f"bad_json|{e}"
            continue
        yield (place, obj, "") if isinstance(obj, dict) else (place, None, "bad_json|not a JSON object")


def _json_rows(data: bytes, name: str) -> Iterator[Row]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        yield name, None, f"bad_json|{e}"
        return
    if not isinstance(doc, list):
        yield name, None, "bad_json|expected a JSON list of objects"
        return
    for index, obj in enumerate(doc):
        place = f"{name}[{index}]"
        yield (place, obj, "") if isinstance(obj, dict) else (place, None, "bad_json|not a JSON object")


def _csv_rows(data: bytes, name: str) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8", errors="surrogateescape"), newline=""))
    line = 2
    for row in reader:
        place = f"{name}:{line}"
        line = reader.line_num + 1
        if any("\udc80" <= ch <= "\udcff" for v in row.values() if isinstance(v, str) for ch in v):
            yield place, None, "non_utf8|bytes that are not UTF-8"
        else:
            yield place, dict(row), ""


@register_source
class MedVideoCapReader(SourceReader):
    name = "medvideocap"
    modality = "video"
    top_folder = "MedVideoCap-55K"
    options: dict[str, Any] = {
        "captions_file": "captions.jsonl",  # .jsonl, .json (a list) or .csv
        "id_field": "id",
        "video_field": "video",
        "video_pattern": "videos/{id}.mp4",
        "brief_field": "brief_caption",
        "detailed_field": "detailed_caption",
        # datakit.video.FrameOptions
        "max_frames": 32,
        "frame_format": "jpg",
        "jpeg_quality": 90,
        "png_compress_level": 1,
        "store": "frames",
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self.framing = FrameOptions.from_options(self.opts)

    def _rows(self) -> Iterator[Row]:
        name = self.opts["captions_file"]
        path = self.root / name
        if not path.is_file():
            yield name, None, "missing_captions_file|listed as captions_file"
            return
        parse = {".jsonl": _jsonl_rows, ".json": _json_rows, ".csv": _csv_rows}.get(path.suffix.lower())
        if parse is None:
            raise ValueError(f"source {self.name}: captions_file {name!r} must end in .jsonl, .json or .csv")
        yield from parse(path.read_bytes(), name)

    def index_files(self) -> list[Path]:
        return [self.root / self.opts["captions_file"]]

    def discover(self) -> Iterator[RawRecord | Rejection]:
        o = self.opts
        seen: set[str] = set()
        named: set[Path] = set()
        out: list[RawRecord | Rejection] = []
        for place, row, why in self._rows():
            if row is None:
                reason, _, detail = why.partition("|")
                out.append(Rejection(source=self.name, record_id=place, path=place, reason=reason, detail=detail))
                continue
            vid = str(row.get(o["id_field"]) or "").strip()
            brief = " ".join(str(row.get(o["brief_field"]) or "").split())
            detailed = " ".join(str(row.get(o["detailed_field"]) or "").split())
            named_as = str(row.get(o["video_field"]) or "").strip() or o["video_pattern"].format(id=vid)
            video = self.root / named_as
            reason, detail = "", ""
            if not vid:
                reason, detail = "missing_id", f"no {o['id_field']!r}"
            elif vid in seen:
                reason, detail = "duplicate_id", f"id {vid!r} appears earlier"
            elif not (brief or detailed):
                reason, detail = "missing_caption", f"empty {o['brief_field']!r} and {o['detailed_field']!r}"
            elif not video.is_file():
                reason, detail = "missing_video_file", named_as
            if reason:
                out.append(Rejection(source=self.name, record_id=vid or place, path=place, reason=reason,
                                     detail=detail))
                continue
            seen.add(vid)
            named.add(video)
            out.append(RawRecord(source=self.name, record_id=vid, modality=self.modality, images=(video,),
                                 text=detailed or None, meta={"brief_caption": brief, "row": place}, root=self.root))
        pattern = o["video_pattern"].format(id="*")
        unnamed = sorted(p for p in self.root.glob(pattern) if p.is_file() and p not in named)
        out.extend(self.reject(p.stem, p, "video_without_caption") for p in unnamed)
        yield from out

    def load(self, record: RawRecord) -> LoadedRecord:
        path = record.images[0]
        rel = record.rel(path)
        clip = read_video(path, rel, self.framing)
        frames = clip.frames
        return LoadedRecord(
            record=record,
            media=clip.media,
            facts={
                "captions": {"summary": record.text or "", "caption": record.meta["brief_caption"]},
                "provenance": {
                    "frame_indices": list(frames.indices),
                    "frame_times_s": list(frames.times),
                    "frame_count": frames.frame_count,
                    "fps": round(frames.fps, 6),
                    "decoder": frames.decoder,
                    "stored_as": self.framing.store,
                    "caption_row": record.meta["row"],
                },
            },
            file_sha256={rel: clip.sha256},
        )
