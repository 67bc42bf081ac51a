"""PubMedVision (Chen et al. 2024, HF ``FreedomIntelligence/PubMedVision``, Apache-2.0): PubMed
figures whose captions GPT-4V rewrote as alignment descriptions and instruction conversations.

Released layout (``docs/corpora.md``), images unpacked flat as its card says
(``unzip -j images_$i.zip -d images/``)::

    PubMedVision/PubMedVision_Alignment_VQA.json          JSON list, 647,031 rows
    PubMedVision/PubMedVision_InstructionTuning_VQA.json  JSON list, 647,031 rows
    PubMedVision/images/<name>.jpg

A row: ``id`` (``Alignment_VQA_<n>``...), ``image`` (a list of paths relative to the top folder,
about a fifth of the rows hold several), ``conversations``, ``modality``, ``body_part`` (kept in
the provenance). Both files describe the same images, so a recipe reads one of them: the
default is the instruction file (stage 3); the stage-2 recipe reads the alignment file as
captions. The release's missing images (e.g. ``pmc_9_0.jpg``) become ``missing_image`` rows.
Row handling is ``llava_format``'s.
"""

from __future__ import annotations

from typing import Any

from datakit.registry import register_source
from datakit.sources.llava_format import LlavaFormatReader


@register_source
class PubMedVisionReader(LlavaFormatReader):
    name = "pubmedvision"
    modality = "mixed"  # PubMed Central figures of every kind (sample.MODALITIES)
    top_folder = "PubMedVision"
    options: dict[str, Any] = {
        **LlavaFormatReader.options,
        "files": [{"file": "PubMedVision_InstructionTuning_VQA.json", "task": "instruction", "images_dir": "."}],
        "keep_fields": ["modality", "body_part"],
    }
