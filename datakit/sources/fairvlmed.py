"""Harvard-FairVLMed, SLO fundus images with clinical notes (Luo et al., FairCLIP, CVPR 2024).

Released layout (``notes/source-layouts.md`` section 11)::

    FairVLMed/{Training,Validation,Testing}/data_<5 digits>.npz
    FairVLMed/gpt-4_summarized_notes.csv      (npz file name in column 0, summary in column 2)

The split folders are an option (``splits``); one third-party loader reads ``Test/``.

Each NPZ holds the fundus image under ``slo_fundus`` (README, ``modules.py``; an older loader reads
``fundus_slo``, so ``fundus_keys`` tries both in order), the clinical ``note`` (a 0-d string
array), ``glaucoma`` (0/1) and demographic codes that are not read. The image is not a file, so it
is PNG-encoded here, deterministically: fixed ``compress_level``, no optimisation, no metadata
chunks, so the same array always gives the same bytes. Arrays of dtype uint8 are stored as they
are; any other real dtype (UNCONFIRMED: the release stores uint8) is min-max scaled to uint8 over
its finite values (others read as the darkest), and a constant one is rejected (``constant_image``).
A 2-D array is grey; (H, W, 3) is RGB.

Texts for the ``captions`` converter: ``note`` (the clinical note) and, when the summary CSV has a
row for the file, ``note_summary``. A missing summary CSV is not an error (summaries exist for part
of the release); its unreadable rows are skipped, leaving those files without a summary. The label
is ``glaucoma``/``no_glaucoma`` from the ``glaucoma`` key (absent key: no label).

Load-time rejections name the NPZ: ``malformed_npz`` (not a readable archive, object arrays that
would need pickle), ``missing_fundus``, ``bad_fundus_array`` (not 2-D or (H, W, 3), empty, no
finite value), ``constant_image``, ``unknown_label`` (``glaucoma`` not 0/1). NPZ files are loaded
with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from datakit.errors import Rejected
from datakit.record import LoadedRecord, Media, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.base import natural_key
from datakit.sources.tables import CsvRow, read_csv
from datakit.sources.roco_v2 import caption_facts
from datakit.splits import official_split

GLAUCOMA_LABELS = ("glaucoma", "no_glaucoma")


def fundus_png(array: np.ndarray, rel: str, compress_level: int = 6) -> Media:
    """Encode a fundus array as PNG with fixed settings (same array -> same bytes)."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)) or array.size == 0:
        raise Rejected("bad_fundus_array", rel, f"shape {array.shape}, expected (H, W) or (H, W, 3)")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise Rejected("bad_fundus_array", rel, f"dtype {array.dtype}")
        values = array.astype(np.float64)
        finite = np.isfinite(values)
        if not finite.any():
            raise Rejected("bad_fundus_array", rel, "no finite pixel value")
        lo, hi = float(values[finite].min()), float(values[finite].max())
        if hi <= lo:
            raise Rejected("constant_image", rel, f"every finite pixel is {lo}")
        values = np.where(finite, values, lo)  # NaN/inf pixels read as the darkest value
        array = np.round((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    elif array.min() == array.max():
        raise Rejected("constant_image", rel, f"every pixel is {int(array.min())}")
    im = Image.fromarray(np.ascontiguousarray(array), "L" if array.ndim == 2 else "RGB")
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=compress_level)
    return Media(data=buf.getvalue(), ext="png", width=im.width, height=im.height)


@register_source
class FairVlmedReader(SourceReader):
    name = "fairvlmed"
    modality = "fundus"
    top_folder = "FairVLMed"
    label_set = GLAUCOMA_LABELS
    options: dict[str, Any] = {
        "splits": ["Training", "Validation", "Testing"],
        "fundus_keys": ["slo_fundus", "fundus_slo"],
        "note_key": "note",
        "summary_csv": "gpt-4_summarized_notes.csv",  # "" to read no summaries
        "summary_file_column": 0,
        "summary_text_column": 2,
        "png_compress_level": 6,
    }

    def _summaries(self) -> dict[str, str]:
        rel = self.opts["summary_csv"]
        if not rel or not (self.root / rel).is_file():
            return {}
        try:
            rows = list(read_csv(self.root / rel, rel, ()))
        except Rejected:
            return {}
        name_col, text_col = int(self.opts["summary_file_column"]), int(self.opts["summary_text_column"])
        out: dict[str, str] = {}
        for row in rows:
            if isinstance(row, CsvRow):
                values = list(row.fields.values())
                if max(name_col, text_col) < len(values) and values[name_col]:
                    out.setdefault(values[name_col], values[text_col])
        return out

    def index_files(self) -> list[Path]:
        return [self.root / self.opts["summary_csv"]] if self.opts["summary_csv"] else []

    def input_exts(self) -> frozenset[str]:
        return frozenset({".npz"})

    def discover(self) -> Iterator[RawRecord | Rejection]:
        summaries = self._summaries()
        for split in sorted(self.opts["splits"], key=natural_key):
            folder = self.root / split
            try:
                files = sorted((p for p in folder.iterdir() if p.suffix == ".npz" and not p.name.startswith(".")),
                               key=lambda p: natural_key(p.name))
            except OSError as e:
                yield self.reject(split, folder, "unreadable_dir", e.strerror or str(e))
                continue
            for p in files:
                meta: dict[str, Any] = {"split": split}
                if p.name in summaries:
                    meta["note_summary"] = summaries[p.name]
                yield RawRecord(source=self.name, record_id=f"{split}/{p.stem}", modality=self.modality,
                                images=(p,), meta=meta, root=self.root, official_split=official_split(split))

    def load(self, record: RawRecord) -> LoadedRecord:
        path, rel = record.images[0], record.rel(record.images[0])
        try:
            data = path.read_bytes()
        except OSError as e:
            raise Rejected("unreadable_file", rel, e.strerror or str(e)) from e
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise Rejected("malformed_npz", rel, str(e) or type(e).__name__) from e
        key = next((k for k in self.opts["fundus_keys"] if k in arrays), None)
        if key is None:
            raise Rejected("missing_fundus", rel, f"none of {self.opts['fundus_keys']} in {sorted(arrays)}")
        media = fundus_png(arrays[key], rel, int(self.opts["png_compress_level"]))
        texts: dict[str, Any] = {}
        note_key = self.opts["note_key"]
        if note_key in arrays:
            note = arrays[note_key]
            texts["note"] = _note_text(note)
        origin = {"note": f"{rel} [{note_key}]"}
        if "note_summary" in record.meta:
            texts["note_summary"] = record.meta["note_summary"]
            origin["note_summary"] = f"{self.opts['summary_csv']} ({path.name})"
        label = None
        if "glaucoma" in arrays:
            flag = arrays["glaucoma"]
            if flag.size != 1 or flag.dtype.kind not in "biuf" or flag.item() not in (0, 1):
                raise Rejected("unknown_label", rel, f"glaucoma is {flag.tolist()!r}, expected 0 or 1")
            label = "glaucoma" if flag.item() == 1 else "no_glaucoma"
        facts = caption_facts(texts, text_origin=origin, fundus_key=key)
        facts.update(label=label, label_set=GLAUCOMA_LABELS, body_part="retina")
        return LoadedRecord(record=record, media=[media], facts=facts,
                            file_sha256={rel: hashlib.sha256(data).hexdigest()})


def _note_text(note: np.ndarray) -> Any:
    """The note as a string; anything else is passed on as it is, for the filter to reject."""
    if note.size != 1:
        return note.tolist()
    value = note.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value
