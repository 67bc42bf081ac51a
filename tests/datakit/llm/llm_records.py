"""Tiny in-memory records for the LLM tests: label images with a mask, video clips with captions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from datakit.converters.base import ConvertContext
from datakit.record import LoadedRecord, Media, RawRecord

KEY_ENV = "FLEMING_TEST_LLM_KEY"
CANARY_KEY = "sk-fleming-CANARY-7f3a9c1e5b2d4f60a8e1"  # distinctive: grep finds any leak


def png_bytes(value: int, size: int = 8) -> bytes:
    arr = np.full((size, size), value % 256, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def label_record(i: int, label: str = "malignant") -> LoadedRecord:
    path = Path(f"/data/busi/{label} ({i}).png")
    raw = RawRecord(source="busi", record_id=f"{label} ({i})", modality="ultrasound", images=(path,),
                    label=label, meta={"age": 40 + i}, root=Path("/data/busi"))
    mask = np.zeros((8, 8), dtype=bool)
    mask[1:3, 1:3] = True
    data = png_bytes(i)
    return LoadedRecord(record=raw, media=[Media(data=data, ext="png", width=8, height=8)],
                        masks={"lesion": mask}, file_sha256={raw.primary_file: f"{i:064x}"})


def video_record(i: int, caption: str | None = None, frames: int = 2) -> LoadedRecord:
    caption = caption if caption is not None else f"Clip {i} shows a laparoscopic suturing step. The knot is tied."
    path = Path(f"/data/medvideocap/clip_{i}.mp4")
    raw = RawRecord(source="medvideocap", record_id=f"clip_{i}", modality="video", images=(path,),
                    text=caption, root=Path("/data/medvideocap"))
    media = [Media(data=png_bytes(i * 7 + f), ext="png", width=8, height=8) for f in range(frames)]
    return LoadedRecord(record=raw, media=media)


def context(*tasks: str, langs: tuple[str, ...] = ("en", "zh"), seed: int = 17) -> ConvertContext:
    return ConvertContext(seed=seed, tasks=tasks, langs=langs)


def enrich(client, records, ctx: ConvertContext):
    """The ``llm_enrich`` converter over ``records`` through a runner on ``client`` (None:
    offline): per record, (samples, missing)."""
    from datakit.converters.base import Missing
    from datakit.llm.runner import LLMRunner
    from datakit.registry import get_converter
    from datakit.sample import Sample

    outs = LLMRunner(client).convert(get_converter("llm_enrich"), [(r, ctx) for r in records])
    return [([x for x in o if isinstance(x, Sample)], [x for x in o if isinstance(x, Missing)]) for o in outs]
