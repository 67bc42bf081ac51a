"""LLaVA-Med (Li et al. 2023, ``microsoft/LLaVA-Med``; CC BY-NC 4.0, research only).

Released layout (``docs/corpora.md``), at the repository root where its ``download_data.sh`` and
``llava/data/download_images.py`` put things::

    LLaVA-Med/data/alignment/llava_med_alignment_500k.json          captions (stage 2)
    LLaVA-Med/data/instruct/llava_med_instruct_60k_inline_mention.json   conversations (stage 3)
    LLaVA-Med/data/llava_med_image_urls.jsonl     {"pmc_tar_url", "image_file_path", "pair_id"}
    LLaVA-Med/data/images/<pair_id>.jpg           copied out of each PMC article's tarball

The images are distributed as URLs only: the download script fetches each PMC tarball and
copies the figure to ``data/images/<pair_id>.jpg``. A row whose image was not downloaded (dead
archive, issues #48/#58) is a ``missing_image`` row whose detail names its tarball URL from the
URL list; a malformed URL-list line only loses that hint. Instruct rows carry ``domain`` (kept in
the provenance). Row handling is ``llava_format``'s.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from datakit.registry import register_source
from datakit.sources.llava_format import LlavaFormatReader

INSTRUCT = {"file": "data/instruct/llava_med_instruct_60k_inline_mention.json", "task": "instruction",
            "images_dir": "data/images"}
ALIGNMENT = {"file": "data/alignment/llava_med_alignment_500k.json", "task": "caption", "images_dir": "data/images"}


@register_source
class LlavaMedReader(LlavaFormatReader):
    name = "llava_med"
    modality = "mixed"  # PubMed Central figures of every kind (sample.MODALITIES)
    top_folder = "LLaVA-Med"
    options: dict[str, Any] = {
        **LlavaFormatReader.options,
        "files": [INSTRUCT],
        "keep_fields": ["domain"],
        "image_urls": "data/llava_med_image_urls.jsonl",
    }

    def index_files(self) -> list[Path]:
        return [*super().index_files(), self.root / self.opts["image_urls"]]

    @cached_property
    def _urls(self) -> dict[str, str]:
        """``<pair_id>.jpg`` -> its PMC tarball URL, from the release's URL list."""
        path = self.root / self.opts["image_urls"]
        urls: dict[str, str] = {}
        if not path.is_file():
            return urls
        for raw in path.read_bytes().splitlines():
            try:
                row = json.loads(raw)
                urls[f"{row['pair_id']}.jpg"] = str(row["pmc_tar_url"])
            except (ValueError, KeyError, TypeError):
                continue  # a hint only: the row itself is still refused as missing_image
        return urls

    def image_hint(self, image: str) -> str:
        url = self._urls.get(image)
        return f"download it from {url}" if url else ""
