"""The Energon side of the shard contract: dataset.yaml, energon's own prepare, and the cooker.

Shards are a *crude* Energon dataset (energon's recommended form for custom sample layouts): the
``dataset.yaml`` names ``CrudeWebdataset`` with the subflavor ``datakit_format: fleming-vqa/2``,
and ``cook_fleming_vqa`` (registered through ``COOKERS`` in a task encoder) turns the raw parts
``json`` + ``0.png`` ... into a ``FlemingVQASample`` with ordered images and the conversation.
A recipe of interleaved documents (MMC4) names ``datakit_format: fleming-interleaved/1`` instead,
and ``cook_fleming_interleaved`` makes a ``FlemingInterleavedSample`` (images + marked-up text).
The trainer's task encoder imports this module; datakit never imports the trainer.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

from megatron.energon import Cooker, Sample, basic_sample_keys, edataclass, stateless

from datakit.sample import INTERLEAVED_SCHEMA, SCHEMA

log = logging.getLogger(__name__)

DATASET_YAML = (
    "__module__: megatron.energon\n"
    "__class__: CrudeWebdataset\n"
    "subflavors:\n"
    "  datakit_format: {schema}\n"
    "  datakit_recipe: {recipe}\n"
)
SPLITS = ("train", "val")
_MEDIA_PART = re.compile(r"^(\d+)\.([a-z0-9]+)$")


def write_dataset_yaml(root: Path, recipe: str, schema: str = SCHEMA) -> Path:
    """``.nv-meta/dataset.yaml`` naming the sample kind the shards hold (one kind per dataset)."""
    if schema not in (SCHEMA, INTERLEAVED_SCHEMA):
        raise ValueError(f"unknown sample schema {schema!r}; known: {SCHEMA}, {INTERLEAVED_SCHEMA}")
    meta = root / ".nv-meta"
    meta.mkdir(parents=True, exist_ok=True)
    path = meta / "dataset.yaml"
    path.write_text(DATASET_YAML.format(recipe=recipe, schema=schema), encoding="utf-8")
    return path


def prepare(root: Path, shard_paths: list[str], split_patterns: list[tuple[str, str]] | None = None) -> None:
    """Run energon's own prepare over the written tars: ``.tar.idx`` files, ``index.sqlite``,
    ``.info.json`` and ``split.yaml`` (train/val by folder). One worker: the shards are already
    ordered, and the output must not depend on the machine's core count."""
    from megatron.energon.flavors.webdataset.prepare import WebdatasetPreparator

    chatter = io.StringIO()  # prepare prints progress lines; keep the build summary readable
    with contextlib.redirect_stdout(chatter):
        WebdatasetPreparator.prepare_dataset(
            root,
            shard_paths,
            split_parts_patterns=split_patterns or [(split, f"{split}/.*") for split in SPLITS],
            shuffle_seed=None,
            workers=1,
        )
    log.debug("energon prepare: %s", chatter.getvalue().strip())


@edataclass
class FlemingVQASample(Sample):
    """A cooked datakit sample: ordered images (decoded by the task encoder's decoder) + chat."""

    #: Media in order, one per ``<image>`` token (PIL images / tensors / AV decoders, as decoded).
    images: list
    #: InternVL-style turns: ``[{"from": "human", "value": "<image>\n..."}, {"from": "gpt", ...}]``
    conversation: list
    #: The sample JSON's other fields: source, modality, lang, group, provenance, and ``turns``
    #: (per human/gpt pair: key, task, question_type, options, answer, provenance).
    meta: dict


@edataclass
class FlemingInterleavedSample(Sample):
    """A cooked interleaved document: ordered images + the text holding one ``<image>`` each."""

    #: Media in order, one per ``<image>`` marker of ``text``.
    images: list
    #: The document, ``<image>`` markers where its images stand.
    text: str
    #: The structured fields of the sample JSON (source, task, lang, group, provenance).
    meta: dict


def media_parts(raw: dict[str, Any]) -> list[str]:
    """Names of the media parts of a crude sample in order (``0.png``, ``1.png``, ... ``10.png``)."""
    found = []
    for name in raw:
        m = _MEDIA_PART.match(name)
        if m:
            found.append((int(m.group(1)), name))
    return [name for _, name in sorted(found)]


def _checked(raw: dict, schema: str) -> tuple[dict, list[str]]:
    """The sample JSON and its media part names, after checking both against ``schema``."""
    doc = raw["json"]
    if isinstance(doc, (bytes, str)):
        doc = json.loads(doc)
    if doc.get("schema") != schema:
        raise ValueError(f"sample {raw.get('__key__')}: schema {doc.get('schema')!r}, expected {schema}")
    parts = media_parts(raw)
    expected = [m["part"] for m in doc.get("media", [])]
    if parts != expected:
        raise ValueError(f"sample {raw.get('__key__')}: media parts {parts} but JSON lists {expected}")
    return doc, parts


@stateless
def cook_fleming_vqa(raw: dict) -> FlemingVQASample:
    doc, parts = _checked(raw, SCHEMA)
    meta = {k: v for k, v in doc.items() if k not in ("conversations", "media")}
    return FlemingVQASample(
        **basic_sample_keys(raw),
        images=[raw[p] for p in parts],
        conversation=doc["conversations"],
        meta=meta,
    )


@stateless
def cook_fleming_interleaved(raw: dict) -> FlemingInterleavedSample:
    doc, parts = _checked(raw, INTERLEAVED_SCHEMA)
    meta = {k: v for k, v in doc.items() if k not in ("text", "media")}
    return FlemingInterleavedSample(
        **basic_sample_keys(raw),
        images=[raw[p] for p in parts],
        text=doc["text"],
        meta=meta,
    )


COOKERS = [
    Cooker(cook_fleming_vqa, has_subflavors={"datakit_format": SCHEMA}),
    Cooker(cook_fleming_interleaved, has_subflavors={"datakit_format": INTERLEAVED_SCHEMA}),
]
