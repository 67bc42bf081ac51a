"""Interleaved documents -> ``InterleavedSample``s (stage-1 pretraining; no question, no answer).

The reader (``sources.mmc4``) has placed each image at a sentence (``facts["document"]``:
``sentences``, one ``placement`` index per loaded image, the document's ``lang``); this converter
writes the text the trainer reads. Sentences are joined by a space; an image stands on its own
line before the sentence it was matched to::

    First sentence. Second sentence.
    <image>
    The sentence the image was matched to. Next sentence.

One sample per document, task ``document``, in the document's own language only (web text is
not translated). Provenance: the document shard and its sha256, the row, the URL, the stored
images and the images trimmed from the document by reason.
"""

from __future__ import annotations

from datakit.converters.base import ConvertContext, check_context
from datakit.record import LoadedRecord
from datakit.registry import converter
from datakit.sample import IMAGE_TOKEN, InterleavedSample, sample_key

NAME = "interleaved"
TASKS = ("document",)


def document_text(sentences: list[str], placement: list[int]) -> str:
    """The document with one ``<image>`` line per placed image, in placement order."""
    at: dict[int, int] = {}
    for index in placement:
        at[index] = at.get(index, 0) + 1
    lines: list[str] = []
    run: list[str] = []  # sentences of the current line
    for index, sentence in enumerate(sentences):
        for _ in range(at.get(index, 0)):
            if run:
                lines.append(" ".join(run))
                run = []
            lines.append(IMAGE_TOKEN)
        if sentence:
            run.append(sentence)
    if run:
        lines.append(" ".join(run))
    return "\n".join(lines)


@converter(NAME, tasks=TASKS)
def interleaved(loaded: LoadedRecord, ctx: ConvertContext) -> list[InterleavedSample]:
    check_context(NAME, ctx, TASKS)
    doc, record = loaded.facts["document"], loaded.record
    if doc["placement"] != sorted(doc["placement"]):
        raise ValueError(f"{record.uid}: images must come in document order, got placement {doc['placement']}")
    if doc["lang"] not in ctx.langs:
        return []
    provenance = {
        "source_file": doc["source_file"],
        "sha256": loaded.file_sha256[doc["source_file"]],
        "converter": NAME,
        "row": doc["row"],
        "url": doc["url"],
        "images": [m.sha256 for m in loaded.media],
        "trimmed": doc["trimmed"],
    }
    return [InterleavedSample(
        key=sample_key(record.source, record.record_id, "document", doc["lang"]),
        source=record.source, modality=record.modality, task="document", lang=doc["lang"], group=record.uid,
        text=document_text(doc["sentences"], doc["placement"]), media=list(loaded.media), provenance=provenance,
    )]
