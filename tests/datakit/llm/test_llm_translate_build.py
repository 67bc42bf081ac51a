"""Chinese caption samples come from the LLM translation step inside a real build: translated
answers with an endpoint (and again from the warm cache), ``skipped_llm`` rows without one."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import yaml

from datakit.build import build
from datakit.llm.config import LLMConfig
from datakit.recipe import load_recipe
from datakit.shard_writer import iter_samples
from llm_records import KEY_ENV

RECIPE = {
    "name": "roco_zh", "seed": 5, "val_fraction": 0.0, "langs": ["en", "zh"],
    "sources": [{"source": "roco_v2", "convert": [
        {"converter": "captions", "tasks": ["caption_brief", "caption_detailed"], "options": {"langs": ["en", "zh"]}},
    ]}],
}


def _recipe(tmp_path: Path):
    path = tmp_path / "roco_zh.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return load_recipe(path)


def _cfg(tmp_path: Path, url: str | None) -> LLMConfig:
    return LLMConfig(cache_dir=tmp_path / "cache", base_url=url, model="test-model", api_key_env=KEY_ENV,
                     concurrency=2, timeout_s=5.0, max_attempts=2, backoff_initial_s=0.005)


def _docs(out: Path) -> list[dict]:
    return [json.loads(p["json"]) for t in sorted(out.glob("*/*.tar")) for _, p in iter_samples(t)]


def test_zh_captions_from_translation_then_warm_cache(tmp_path, server, api_key, sample_sources):
    recipe = _recipe(tmp_path)
    result = build(recipe, sample_sources, tmp_path / "a", llm_config=_cfg(tmp_path, server.url))
    docs = _docs(tmp_path / "a")
    en = [d for d in docs if d["lang"] == "en"]
    zh = [d for d in docs if d["lang"] == "zh"]
    assert en and len(zh) == len(en)
    assert all(any("\u4e00" <= c <= "\u9fff" for c in d["turns"][0]["answer"]) for d in zh)  # translated answers
    assert {d["group"] for d in zh} == {d["group"] for d in en}
    assert result.summary["accounting"]["samples"]["skipped_llm"] == 0
    sent = server.requests
    again = build(recipe, sample_sources, tmp_path / "b", llm_config=_cfg(tmp_path, server.url))
    assert server.requests == sent and again.release_sha256 == result.release_sha256


def test_offline_zh_captions_are_counted_as_skipped(tmp_path, sample_sources, api_key):
    result = build(_recipe(tmp_path), sample_sources, tmp_path / "o", llm_config=_cfg(tmp_path, None))
    acc = result.summary["accounting"]["samples"]
    assert set(result.summary["langs"]) == {"en"}
    assert acc["skipped_llm"] == acc["emitted"] > 0  # one planned ZH twin per English caption sample
    rows = pl.read_parquet(tmp_path / "o" / "manifest.parquet").filter(pl.col("status") == "skipped_llm")
    assert set(rows["lang"]) == {"zh"} and set(rows["reason"]) == {"offline"}
