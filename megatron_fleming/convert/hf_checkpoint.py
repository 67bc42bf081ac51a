"""Read and write Hugging Face InternVL checkpoint folders in either layout.

Reading gives one view whatever the layout: transformers' ``InternVLConfig`` and the tensors
under transformers' names, loaded lazily. Files that are not weights or config (tokenizer,
processor config, the original release's remote code) travel with the weights as assets.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import InternVLConfig

from megatron_fleming.convert.hf_configs import (
    QWEN2_IMG_CONTEXT_ID,
    config_from_internvl_chat,
    internvl_chat_from_config,
)
from megatron_fleming.convert.hf_layouts import (
    EMBED_TOKENS,
    LM_HEAD,
    HFLayout,
    canonical_transformers_key,
    detect_layout,
    internvl_to_transformers,
    transformers_to_internvl,
)
from megatron_fleming.convert.tensors import (
    MappedSource,
    SafetensorsSource,
    TensorSource,
    check_rules_cover,
    rename,
    write_safetensors,
)

log = logging.getLogger(__name__)

IMG_CONTEXT_TOKEN = "<IMG_CONTEXT>"
_NOT_ASSETS = {"config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json"}


@dataclass(frozen=True)
class HFCheckpoint:
    """A Hugging Face InternVL checkpoint seen through transformers' names."""

    layout: HFLayout
    config: InternVLConfig
    tensors: TensorSource
    raw_config: dict[str, Any]
    assets: list[Path] = field(default_factory=list)


def _assets(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.name not in _NOT_ASSETS
                  and not p.name.endswith((".safetensors", ".bin")))


def image_context_id(raw_config: dict[str, Any], assets: Iterable[Path]) -> int:
    """The ``<IMG_CONTEXT>`` token id: the original config.json does not record it, its tokenizer does."""
    if "image_token_id" in raw_config:
        return int(raw_config["image_token_id"])
    by_name = {p.name: p for p in assets}
    if "added_tokens.json" in by_name:
        added = json.loads(by_name["added_tokens.json"].read_text())
        if IMG_CONTEXT_TOKEN in added:
            return int(added[IMG_CONTEXT_TOKEN])
    if "tokenizer.json" in by_name:
        for tok in json.loads(by_name["tokenizer.json"].read_text()).get("added_tokens", []):
            if tok.get("content") == IMG_CONTEXT_TOKEN:
                return int(tok["id"])
    log.warning("no %s in the tokenizer files; assuming InternVL3's id %d", IMG_CONTEXT_TOKEN,
                QWEN2_IMG_CONTEXT_ID)
    return QWEN2_IMG_CONTEXT_ID


def read_hf_checkpoint(folder: Path) -> HFCheckpoint:
    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text())
    layout = detect_layout(raw)
    assets = _assets(folder)
    files = SafetensorsSource(folder)
    if layout is HFLayout.INTERNVL:
        cfg = config_from_internvl_chat(raw, image_context_id(raw, assets))
        rules = internvl_to_transformers(cfg)
    else:
        cfg = InternVLConfig.from_dict(copy.deepcopy(raw))
        canonical = {canonical_transformers_key(k): k for k in files.keys()}
        rules = {k: rename(canonical.get(k, k)) for k in _native_keys(cfg)}
    # A tied lm_head is not stored, but a writer that stored it anyway did no harm.
    tied_head = [LM_HEAD] if cfg.tie_word_embeddings else []
    check_rules_cover(rules, files, f"{folder} ({layout.value} layout)", may_skip=tied_head)
    return HFCheckpoint(layout, cfg, MappedSource(files, rules), raw, assets)


def _native_keys(cfg: InternVLConfig) -> list[str]:
    return sorted({k for r in transformers_to_internvl(cfg).values() for k in r.sources})


def write_hf_checkpoint(
    folder: Path,
    cfg: InternVLConfig,
    tensors: TensorSource,
    layout: HFLayout,
    *,
    config_json: dict[str, Any] | None = None,
    chat_extras: dict[str, Any] | None = None,
    assets: Iterable[Path] = (),
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = 5 << 30,
) -> None:
    """Write `tensors` (transformers names) as a checkpoint folder in `layout`.

    `config_json`, when given, is written verbatim: it is the source checkpoint's own config, so a
    round trip into the layout it came from gives back the same config. Otherwise one is made from
    `cfg` (plus `chat_extras`, the original-only fields, for the internvl layout).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if layout is HFLayout.INTERNVL:
        out = MappedSource(tensors, transformers_to_internvl(cfg))
    else:
        out = MappedSource(tensors, {k: rename(k) for k in _native_keys(cfg)})
    if config_json is None:
        dtype_name = str(dtype or tensors.get(EMBED_TOKENS).dtype).removeprefix("torch.")
        if layout is HFLayout.INTERNVL:
            config_json = {**internvl_chat_from_config(cfg, chat_extras), "torch_dtype": dtype_name}
        else:
            config_json = {**cfg.to_dict(), "architectures": ["InternVLForConditionalGeneration"],
                           "dtype": dtype_name}

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t if dtype is None else t.to(dtype)

    write_safetensors(folder, ((k, cast(out.get(k))) for k in out.keys()), max_shard_bytes)
    (folder / "config.json").write_text(json.dumps(config_json, indent=2, sort_keys=True) + "\n")
    for asset in assets:
        shutil.copy2(asset, folder / Path(asset).name)
