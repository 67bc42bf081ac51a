"""Any folder of NIfTI volumes (``.nii``, ``.nii.gz``), read with nibabel.

Layout (a convention of this reader, not a released dataset's; every name is an option)::

    <top>/**/<name>.nii[.gz]           one volume per file, NIfTI-1 or NIfTI-2
    <top>/**/<name>.txt                optional report, the answer of the ``report`` task
    <top>/**/<name>.label.txt          optional label (one line), for ``label_*`` tasks

Decisions:

* Slices are taken along ``slice_axis`` of the stored voxel array (default 2, the third axis,
  along which scanners acquire), in index order. Each slice is turned to display orientation
  by ``np.rot90`` (first voxel axis left to right, second axis bottom to top), which shows an
  RAS/LAS axial slice with anterior up. The plane (axial/coronal/sagittal) is read from the
  affine: the world axis the slicing axis runs along (``nibabel.aff2axcodes``).
* Voxels are scaled by the header (``scl_slope``/``scl_inter``) as ``get_fdata`` does, so a CT
  volume is in HU and ``window: [centre, width]`` can be given in HU.
* A 4-D file whose extra axes have length 1 is read as 3-D; other 4-D files (time series) are
  refused (``volume_bad_shape``), 2-D ones ``volume_not_3d``.
* The label set of a folder is collected at discovery and carried by every record, so a
  multiple-choice label question draws distractors from the folder's other labels.
* Files that are not volumes (sidecars, notes) are not inputs and are not listed.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sources.base import Rejection, SourceReader
from datakit.sources.base import natural_key
from datakit.sources.m3d_cap import read_report
from datakit.volume import SliceOptions, as_volume, check_shape, imaging_option, read_bytes, slice_volume

_PLANE_OF_AXIS = {"S": "axial", "I": "axial", "A": "coronal", "P": "coronal", "L": "sagittal", "R": "sagittal"}


def nifti_stem(path: Path, suffixes: list[str]) -> str:
    name = path.name
    suffix = max((s for s in suffixes if name.endswith(s)), key=len)
    return name[: -len(suffix)]


def load_nifti(data: bytes, rel: str):
    """A nibabel image from a file's bytes (gzip or not, NIfTI-1 or NIfTI-2)."""
    import nibabel as nib

    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise Rejected("volume_unreadable", rel, f"gzip: {e}") from e
    header_size = int.from_bytes(data[:4], "little") if len(data) >= 4 else 0
    if header_size not in (348, 540):
        header_size = int.from_bytes(data[:4], "big")
    image_class = nib.Nifti2Image if header_size == 540 else nib.Nifti1Image
    try:
        image = image_class.from_bytes(data)
        arr = image.get_fdata(dtype=np.float32)
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, ValueError, EOFError,
            OSError) as e:
        raise Rejected("volume_unreadable", rel, f"{type(e).__name__}: {e}") from e
    return image, arr


@register_source
class NiftiReader(SourceReader):
    name = "nifti"
    modality = "volume"
    top_folder = "nifti"
    options: dict[str, Any] = {
        "suffixes": [".nii", ".nii.gz"],
        "report_sidecar": "{stem}.txt",
        "label_sidecar": "{stem}.label.txt",
        "slice_axis": 2,
        "imaging": "ct",  # a modality of vocabulary.yaml: ct, mri, ...
        **SliceOptions.reader_options(),
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self.slicing = SliceOptions.from_options(self.opts)
        imaging_option(self.name, self.opts["imaging"])
        if self.opts["slice_axis"] not in (0, 1, 2):
            raise ValueError(f"source nifti: slice_axis must be 0, 1 or 2, got {self.opts['slice_axis']!r}")

    def _sidecar(self, volume: Path, option: str) -> Path | None:
        pattern = self.opts[option]
        if not pattern:
            return None
        path = volume.with_name(pattern.format(stem=nifti_stem(volume, self.opts["suffixes"])))
        return path if path.is_file() else None

    def record_files(self, record: RawRecord) -> tuple[Path, ...]:
        sidecars = tuple(self.root / record.meta[k] for k in ("report", "label") if k in record.meta)
        return record.images + sidecars

    def input_exts(self) -> frozenset[str]:
        return frozenset(self.opts["suffixes"])

    def discover(self) -> Iterator[RawRecord | Rejection]:
        suffixes = tuple(self.opts["suffixes"])
        volumes = sorted((p for p in self.root.rglob("*") if p.name.endswith(suffixes) and p.is_file()
                          and not any(part.startswith(".") for part in p.relative_to(self.root).parts)),
                         key=lambda p: natural_key(p.relative_to(self.root).as_posix()))
        found: list[tuple[Path, dict[str, str], str | None]] = []
        for volume in volumes:
            meta, label = {}, None
            for kind in ("report", "label"):
                sidecar = self._sidecar(volume, f"{kind}_sidecar")
                if sidecar is not None:
                    meta[kind] = sidecar.relative_to(self.root).as_posix()
            if "label" in meta:
                try:
                    label = (self.root / meta["label"]).read_text(encoding="utf-8").strip() or None
                except (OSError, UnicodeDecodeError) as e:
                    yield self.reject(self._record_id(volume), self.root / meta["label"], "bad_label_file", str(e))
                    continue
            found.append((volume, meta, label))
        label_set = sorted({label for _, _, label in found if label})
        for volume, meta, label in found:
            yield RawRecord(source=self.name, record_id=self._record_id(volume), modality=self.modality,
                            images=(volume,), label=label, meta={**meta, "label_set": label_set}, root=self.root)

    def _record_id(self, volume: Path) -> str:
        rel = volume.relative_to(self.root)
        return (rel.parent / nifti_stem(volume, self.opts["suffixes"])).as_posix()

    def load(self, record: RawRecord) -> LoadedRecord:
        import nibabel as nib

        path = record.images[0]
        rel = record.rel(path)
        data = read_bytes(path, rel)
        image, arr = load_nifti(data, rel)
        while arr.ndim > 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        arr = arr.reshape(check_shape(arr.shape, rel))  # 2-D and 4-D refused before the axes move
        axis = self.opts["slice_axis"]
        display = np.rot90(np.moveaxis(arr, axis, 0), k=1, axes=(1, 2))
        slices = slice_volume(as_volume(display, rel, self.slicing.expected_shape), self.slicing)
        code = nib.aff2axcodes(image.affine)[axis]
        facts: dict[str, Any] = {
            "plane": _PLANE_OF_AXIS.get(code),
            "imaging": self.opts["imaging"],
            "provenance": {"slice_indices": list(slices.indices), "depth": slices.depth, "slice_axis": axis},
        }
        digests = {rel: hashlib.sha256(data).hexdigest()}
        report_rel = record.meta.get("report")
        if report_rel:
            text, digests[report_rel] = read_report(self.root / report_rel, report_rel)
            report = " ".join(text.split())
            if not report:
                raise Rejected("empty_report", report_rel)
            facts["report"] = report
        if record.label:
            facts["label"] = record.label
            facts["label_set"] = tuple(record.meta["label_set"])
        return LoadedRecord(record=record, media=slices.media, facts=facts, file_sha256=digests)
