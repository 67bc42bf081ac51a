"""Digital Knee X-ray Images (Gornale & Patravali 2020, Mendeley t9ndx37v5h).

Released layout (``notes/source-layouts.md`` section 4)::

    <top>/Knee X-ray Images/MedicalExpert-I/{0Normal,1Doubtful,2Mild,3Moderate,4Severe}/NormalG0 (1).png
                           /MedicalExpert-II/{...same...}/

The grade folder is the Kellgren-Lawrence grade (digit) and its name; the label is the name
lower-cased (``normal`` ... ``severe``) and ``facts["kl_grade"]`` the digit. The inner
``Knee X-ray Images`` level is read when present (``nested_folder``), else the expert folders are
looked for directly under the top folder.

The two experts graded the same images independently, so their folders hold the same pictures,
sometimes under different grades. Reading both would put each image in the shards twice, possibly
with contradicting answers; a build therefore reads exactly one expert, chosen by the option
``expert`` (default ``MedicalExpert-I``, the first grader). A recipe that wants the second expert's
grades sets ``expert: MedicalExpert-II``. Duplicate images inside one expert's folders (reported
by users of the dataset) are left to the dedup stage, which compares decoded pixels.

Assumptions: the top folder ``Digital Knee X-ray Images`` is UNCONFIRMED (Mendeley names the
download after the dataset title); grade folder names are configurable with ``grades``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection
from datakit.sources.brain_tumor_mri import ClassFolderReader
from datakit.sources.base import natural_key

_GRADE = re.compile(r"^(?P<grade>\d+)\s*(?P<name>\S.*)$")


@register_source
class KneeXrayReader(ClassFolderReader):
    name = "knee_xray"
    modality = "x-ray"
    top_folder = "Digital Knee X-ray Images"
    body_part = "knee"
    label_set = ("doubtful", "mild", "moderate", "normal", "severe")
    options: dict[str, Any] = {
        "nested_folder": "Knee X-ray Images",
        "expert": "MedicalExpert-I",
        "grades": ["0Normal", "1Doubtful", "2Mild", "3Moderate", "4Severe"],  # <KL digit><name>
        "image_exts": [".png", ".jpg", ".jpeg"],
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        if not isinstance(self.opts["expert"], str):
            raise ValueError(f"source {self.name}: option expert must be one folder name, "
                             f"got {self.opts['expert']!r} (the experts grade the same images)")
        self._grades: dict[str, tuple[int, str]] = {}
        for folder in self.opts["grades"]:
            m = _GRADE.match(folder)
            if not m:
                raise ValueError(f"source {self.name}: grade folder {folder!r} must be "
                                 "<KL digit><name>, e.g. 0Normal")
            self._grades[folder] = (int(m.group("grade")), m.group("name").lower())

    def labels(self) -> tuple[str, ...]:
        return tuple(sorted(name for _, name in self._grades.values()))

    def _expert_dir(self) -> Path:
        nested = self.root / self.opts["nested_folder"]
        return (nested if nested.is_dir() else self.root) / self.opts["expert"]

    def unclaimed(self, rel: PurePosixPath) -> tuple[str, str, str]:
        status, reason, detail = super().unclaimed(rel)
        expert = self.opts["expert"]
        if reason == "not_in_layout" and any(p.startswith("MedicalExpert") and p != expert for p in rel.parts):
            return "ignored", "other_expert", f"a build reads one expert's grades (option expert: {expert})"
        return status, reason, detail

    def discover(self) -> Iterator[RawRecord | Rejection]:
        base, expert = self._expert_dir(), self.opts["expert"]
        for folder in sorted(self._grades, key=natural_key):
            grade, label = self._grades[folder]
            yield from self.folder_records(base / folder, f"{expert}/{folder}", label,
                                           {"expert": expert, "kl_grade": grade})

    def load(self, record: RawRecord) -> LoadedRecord:
        loaded = super().load(record)
        loaded.facts["kl_grade"] = int(record.meta["kl_grade"])
        return loaded
