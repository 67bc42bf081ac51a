"""Quilt-LLaVA (Seyfioglu et al. 2024): histopathology conversations from educational videos.

Released layout (``docs/corpora.md``): HF ``wisdomik/QUILT-LLaVA-Instruct-107K`` ships
``quilt_instruct_107k.json`` (LLaVA format; ``id`` = ``<video id>_<n>``, ``image`` one relative
path, ``<image>`` before or after the first question, the iterative-abduction subset multi-turn);
its images come as ``quilt_instruct.zip`` after a data-use form, unpacked where its training
scripts read them. The stage-1 captions are ``wisdomik/Quilt-LLaVA-Pretrain``
(``quilt_pretrain.json``, images from Quilt-1M). The top folder holding both is this project's
choice (the releases are separate repositories)::

    Quilt-LLaVA/quilt_instruct_107k.json    Quilt-LLaVA/quilt_instruct/<image>
    Quilt-LLaVA/quilt_pretrain.json         Quilt-LLaVA/quilt_1m/<image>

Licences differ: the instruction data is CC BY-NC-ND 3.0 (no redistribution); the pretraining
card says MIT. Row handling is ``llava_format``'s.
"""

from __future__ import annotations

from typing import Any

from datakit.registry import register_source
from datakit.sources.llava_format import LlavaFormatReader

INSTRUCT = {"file": "quilt_instruct_107k.json", "task": "instruction", "images_dir": "quilt_instruct"}
PRETRAIN = {"file": "quilt_pretrain.json", "task": "caption", "images_dir": "quilt_1m"}


@register_source
class QuiltLlavaReader(LlavaFormatReader):
    name = "quilt_llava"
    modality = "pathology"  # sample.MODALITIES
    top_folder = "Quilt-LLaVA"
    options: dict[str, Any] = {**LlavaFormatReader.options, "files": [INSTRUCT]}
