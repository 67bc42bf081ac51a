"""Released conversations -> samples, unchanged: the public instruction sets' pass-through.

The readers of PubMedVision, LLaVA-Med, Quilt-LLaVA, VQA-Med-2019, MIMIC-CXR-VQA and
OpenMedReason have already checked each conversation (``sources.dialogues``) and put it in
``facts["dialogues"]`` with its task, question type, answer and options. This converter writes
one QA item per dialogue whose task the recipe step asks for (``caption``, ``instruction``,
``vqa``, ``cot``) and whose language is among the recipe's: no template, no rewording. A
dialogue of several turns stays one item, and one shard sample of the ``fleming-vqa/2`` schema
with a ``turns`` entry per human/gpt pair, in the release's order (``sample.conversation_doc``);
single-turn dialogues of one image (VQA-Med-2019, MIMIC-CXR-VQA questions) are joined into one
conversation like template QA. The record is the group of all its samples (one image, one
dedup and split unit).

Provenance: the source file and its sha256 (as every converter), the row of the release the
conversation came from, and the fields the reader kept (PubMedVision's modality, a VQA-Med
category, ...).
"""

from __future__ import annotations

from typing import Any

from datakit.converters.base import ConvertContext, check_context
from datakit.converters.templates import sample_modality
from datakit.record import LoadedRecord
from datakit.registry import converter
from datakit.sample import Sample, sample_key
from datakit.sources.dialogues import TASKS

NAME = "conversations"


@converter(NAME, tasks=TASKS)
def conversations(loaded: LoadedRecord, ctx: ConvertContext) -> list[Sample]:
    check_context(NAME, ctx, TASKS)
    record = loaded.record
    source_file = record.primary_file
    samples: list[Sample] = []
    for number, d in enumerate(loaded.facts.get("dialogues") or ()):
        if d["task"] not in ctx.tasks or d["lang"] not in ctx.langs:
            continue
        provenance: dict[str, Any] = {
            "source_file": source_file,
            "sha256": loaded.file_sha256[source_file],
            "converter": NAME,
            "row": d["row"],
            **d.get("provenance", {}),
        }
        samples.append(Sample(
            key=sample_key(record.source, record.record_id, d["task"], d["lang"], number),
            source=record.source,
            modality=sample_modality(loaded),
            task=d["task"],
            lang=d["lang"],
            group=record.uid,
            question_type=d["question_type"],
            conversation=[dict(turn) for turn in d["conversation"]],
            answer=d["answer"],
            media=list(loaded.media),
            options=list(d["options"]) if d.get("options") else None,
            provenance=provenance,
        ))
    return samples
