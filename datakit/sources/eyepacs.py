"""EyePACS, Kaggle Diabetic Retinopathy Detection (2015).

Released layout (``notes/source-layouts.md`` section 7)::

    <top>/trainLabels.csv            image,level     (10_left,0)
    <top>/train/<patient>_<left|right>.jpeg

``image`` has no extension; the file is ``<images>/<image><image_ext>`` (``.jpeg``). The level is
the DR grade 0-4 and the label is the level as a string (``"0"`` ... ``"4"``), translated through
``vocabulary.yaml``. ``tables`` lists (CSV, image folder) pairs; the default reads the training
set only. The later-released test labels read the same way, with the extra ``Usage`` column
ignored: ``{csv: retinopathy_solution.csv, images: test}``.

Bad CSV rows are rejections whose path is ``<csv>:<line>``: ``non_utf8``, ``malformed_row``,
``missing_label``, ``unknown_label``, ``missing_image``, ``duplicate_row``. Images of a listed folder
that no row names are ``image_without_label``. Record ids are ``<images>/<image>`` (``train/10_left``).
Both eyes of a subject are separate records; they are not grouped (no patient-level split).
The top folder ``diabetic-retinopathy-detection`` (the Kaggle competition slug) is UNCONFIRMED.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.base import natural_key
from datakit.sources.tables import CsvProblem, read_csv, row_rejection
from datakit.splits import official_split


@register_source
class EyePacsReader(SourceReader):
    name = "eyepacs"
    modality = "fundus"
    top_folder = "diabetic-retinopathy-detection"
    label_set = ("0", "1", "2", "3", "4")
    options: dict[str, Any] = {
        "tables": [{"csv": "trainLabels.csv", "images": "train"}],
        "image_column": "image",
        "level_column": "level",
        "image_ext": ".jpeg",
        "levels": ["0", "1", "2", "3", "4"],
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        tables = self.opts["tables"]
        if not (isinstance(tables, list) and tables and
                all(isinstance(t, dict) and set(t) == {"csv", "images"} for t in tables)):
            raise ValueError(f"source {self.name}: tables must be a list of {{csv, images}} mappings, "
                             f"got {tables!r}")
        self._levels = tuple(str(v) for v in self.opts["levels"])

    def index_files(self) -> list[Path]:
        return [self.root / t["csv"] for t in self.opts["tables"]]

    def discover(self) -> Iterator[RawRecord | Rejection]:
        for table in self.opts["tables"]:
            yield from self._discover_table(table["csv"], table["images"])

    def _discover_table(self, rel: str, images_dir: str) -> Iterator[RawRecord | Rejection]:
        folder, ext = self.root / images_dir, self.opts["image_ext"]
        try:
            on_disk = {p.name: p for p in folder.iterdir() if p.name.endswith(ext) and not p.name.startswith(".")}
        except OSError as e:
            yield self.reject(images_dir, folder, "unreadable_dir", e.strerror or str(e))
            on_disk = {}
        image_col, level_col = self.opts["image_column"], self.opts["level_column"]
        out: list[RawRecord | Rejection] = []
        seen: dict[str, int] = {}
        try:
            rows = list(read_csv(self.root / rel, rel, (image_col, level_col)))
        except Rejected as e:
            yield self.reject(rel, self.root / rel, e.reason, e.detail)
            rows = []
        for row in rows:
            if isinstance(row, CsvProblem):
                out.append(row_rejection(self.name, rel, row.line, row.reason, row.detail))
                continue
            image, level = row.fields[image_col], row.fields[level_col]
            fail = None
            if not image:
                fail = ("malformed_row", "empty image name")
            elif image in seen:
                fail = ("duplicate_row", f"image {image!r} already on line {seen[image]}")
            elif not level:
                fail = ("missing_label", f"image {image!r}")
            elif level not in self._levels:
                fail = ("unknown_label", f"level {level!r}; known: {list(self._levels)}")
            elif image + ext not in on_disk:
                fail = ("missing_image", f"{images_dir}/{image}{ext} not found")
            if image and image not in seen:
                seen[image] = row.line
            if fail:
                out.append(row_rejection(self.name, rel, row.line, *fail))
                continue
            out.append(RawRecord(source=self.name, record_id=f"{images_dir}/{image}", modality=self.modality,
                                 images=(on_disk[image + ext],), label=level,
                                 meta={"row": f"{rel}:{row.line}"}, root=self.root,
                                 # both eyes of one subject (<id>_left / <id>_right) share a split
                                 split_key=f"subject/{image.rsplit('_', 1)[0]}",
                                 official_split=official_split(Path(images_dir).name)))
        for name, path in on_disk.items():
            if name[: -len(ext)] not in seen:
                out.append(self.reject(f"{images_dir}/{name[: -len(ext)]}", path, "image_without_label"))
        yield from sorted(out, key=lambda r: natural_key(r.record_id))

    def load(self, record: RawRecord) -> LoadedRecord:
        return self.load_labelled_image(record, label_set=tuple(sorted(self._levels)), body_part="retina")
