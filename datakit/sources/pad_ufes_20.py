"""PAD-UFES-20, skin lesion photographs with patient data (Pacheco et al. 2020, Mendeley zr7vgbcyr2).

Released layout (``notes/source-layouts.md`` section 6)::

    <top>/metadata.csv                                    26 columns, one row per image
    <top>/images/imgs_part_<k>/imgs_part_<k>/PAT_<patient>_<lesion>_<n>.png

The three image zips are usually extracted in place, which nests each part twice; the reader
indexes every image under ``images_dir`` at any depth, so flat and nested copies read alike.
The images are smartphone photographs, not dermoscopy (modality ``clinical_photo``).

``metadata.csv`` is read by ``read_csv`` (also used by the EyePACS, ROCOv2 and FairVLMed readers):
every bad row becomes a rejection whose path is ``metadata.csv:<line>``, so a data engineer can
open the file at that line. Reason codes: ``non_utf8``, ``malformed_row`` (wrong field count or
unparseable CSV), ``missing_label``, ``unknown_label``, ``malformed_value`` (a field that is not
``True``/``False``/a number/a known region), ``missing_image`` (``img_id`` not found),
``duplicate_row`` (an ``img_id`` seen before; the first row wins). A file that cannot be read or
lacks the ``img_id``/``diagnostic`` columns is one ``unreadable_file``/``malformed_csv`` rejection.
Images that no row names are ``image_without_metadata``; a second file with the same name
elsewhere under ``images/`` is ``duplicate_image_file``.

Metadata is normalised here so converters never see the quirks: ``True``/``False`` strings become
booleans; ``UNK``, empty and ``NÃO ENCONTRADO`` mean unknown and the field is left out; numbers
become int/float; ``region`` and ``gender`` are lower-cased; ``BRASIL`` is spelled ``BRAZIL``;
``fitspatrick`` (sic) is stored as ``fitzpatrick``. One record per image, id ``img_id``; a lesion
photographed several times gives several records, all with the patient's ``split_key`` so a
patient's images never straddle train and val. The top
folder name ``PAD-UFES-20`` is UNCONFIRMED (a recipe ``path`` may name another).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.tables import CsvProblem, CsvRow, read_csv, row_rejection
from datakit.sources.base import natural_key

_BOOLEAN = ("smoke", "drink", "pesticide", "skin_cancer_history", "cancer_history", "has_piped_water",
            "has_sewage_system", "itch", "grew", "hurt", "changed", "bleed", "elevation", "biopsed")
_FLOAT = {"fitspatrick": "fitzpatrick", "diameter_1": "diameter_1", "diameter_2": "diameter_2"}
_TEXT = ("patient_id", "lesion_id", "background_father", "background_mother")


@register_source
class PadUfes20Reader(SourceReader):
    name = "pad_ufes_20"
    modality = "clinical_photo"
    top_folder = "PAD-UFES-20"
    label_set = ("ack", "bcc", "mel", "nev", "scc", "sek")
    options: dict[str, Any] = {
        "metadata_csv": "metadata.csv",
        "images_dir": "images",
        "image_exts": [".png"],
        "diagnostics": ["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"],  # label = code lower-cased
        "regions": ["ABDOMEN", "ARM", "BACK", "CHEST", "EAR", "FACE", "FOOT", "FOREARM", "HAND",
                    "LIP", "NECK", "NOSE", "SCALP", "THIGH"],
        "unknown_values": ["", "UNK", "NÃO ENCONTRADO"],  # compared upper-case, spaces collapsed
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self._exts = {e.lower() for e in self.opts["image_exts"]}
        self._labels = {d.upper(): d.lower() for d in self.opts["diagnostics"]}
        self._regions = {r.upper() for r in self.opts["regions"]}
        self._unknown = {" ".join(v.upper().split()) for v in self.opts["unknown_values"]}

    def _index_images(self) -> tuple[dict[str, Path], list[Rejection]]:
        found: dict[str, Path] = {}
        dups: list[Rejection] = []
        base = self.root / self.opts["images_dir"]
        files = sorted((p for p in base.rglob("*") if p.suffix.lower() in self._exts and p.is_file()
                        and not p.name.startswith(".")), key=lambda p: natural_key(p.as_posix()))
        for p in files:
            if p.name in found:
                first = found[p.name].relative_to(self.root).as_posix()
                dups.append(self.reject(p.name, p, "duplicate_image_file", f"also {first}"))
            else:
                found[p.name] = p
        return found, dups

    def index_files(self) -> list[Path]:
        return [self.root / self.opts["metadata_csv"]]

    def discover(self) -> Iterator[RawRecord | Rejection]:
        csv_path = self.root / self.opts["metadata_csv"]
        rel = self.opts["metadata_csv"]
        images, items = self._index_images()
        out: list[RawRecord | Rejection] = list(items)
        seen: dict[str, int] = {}
        try:
            rows = list(read_csv(csv_path, rel, ("img_id", "diagnostic")))
        except Rejected as e:
            yield self.reject(rel, csv_path, e.reason, e.detail)
            rows = []
        for row in rows:
            if isinstance(row, CsvProblem):
                out.append(row_rejection(self.name, rel, row.line, row.reason, row.detail))
                continue
            img_id = row.fields["img_id"]
            if not img_id:
                out.append(row_rejection(self.name, rel, row.line, "malformed_row", "empty img_id"))
                continue
            if img_id in seen:
                out.append(row_rejection(self.name, rel, row.line, "duplicate_row",
                                         f"img_id {img_id!r} already on line {seen[img_id]}"))
                continue
            seen[img_id] = row.line
            out.append(self._record(row, rel, images.get(img_id)))
        for name, path in images.items():
            if name not in seen:
                out.append(self.reject(name, path, "image_without_metadata"))
        yield from sorted(out, key=lambda r: natural_key(r.record_id))

    def _record(self, row: CsvRow, rel: str, image: Path | None) -> RawRecord | Rejection:
        f = row.fields
        code = f["diagnostic"].upper()
        if not code or " ".join(code.split()) in self._unknown:
            return row_rejection(self.name, rel, row.line, "missing_label", f"img_id {f['img_id']!r}")
        if code not in self._labels:
            return row_rejection(self.name, rel, row.line, "unknown_label",
                                 f"diagnostic {f['diagnostic']!r}; known: {sorted(self._labels)}")
        if image is None:
            return row_rejection(self.name, rel, row.line, "missing_image",
                                 f"{f['img_id']} not found under {self.opts['images_dir']}/")
        try:
            metadata = self._metadata(f)
        except ValueError as e:
            return row_rejection(self.name, rel, row.line, "malformed_value", str(e))
        return RawRecord(source=self.name, record_id=f["img_id"], modality=self.modality,
                         images=(image,), label=self._labels[code],
                         meta={"metadata": metadata, "row": f"{rel}:{row.line}"}, root=self.root,
                         split_key=f"patient/{f['patient_id']}" if f.get("patient_id") else None)

    def _metadata(self, f: dict[str, str]) -> dict[str, Any]:
        """Known metadata values, normalised; raises ``ValueError`` naming a malformed field."""
        out: dict[str, Any] = {}
        for col, value in f.items():
            if " ".join(value.upper().split()) in self._unknown:
                continue
            upper = value.upper()
            if col in _BOOLEAN:
                if upper not in ("TRUE", "FALSE"):
                    raise ValueError(f"{col} is {value!r}, expected True/False/UNK")
                out[col] = upper == "TRUE"
            elif col == "age":
                age = _number(col, value)
                if not (0 <= age <= 120 and age == int(age)):
                    raise ValueError(f"age is {value!r}, expected whole years 0-120")
                out["age"] = int(age)
            elif col in _FLOAT:
                out[_FLOAT[col]] = _number(col, value)
            elif col == "region":
                if upper not in self._regions:
                    raise ValueError(f"region is {value!r}; known: {sorted(self._regions)}")
                out["region"] = upper.lower()
            elif col == "gender":
                out["gender"] = upper.lower()
            elif col in _TEXT:
                out[col] = "BRAZIL" if upper == "BRASIL" else value
        return out

    def load(self, record: RawRecord) -> LoadedRecord:
        return self.load_labelled_image(record, label_set=tuple(sorted(self._labels.values())), body_part="skin",
                                        metadata=dict(record.meta["metadata"]))


def _number(col: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{col} is {value!r}, expected a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{col} is {value!r}, expected a finite number")
    return number
