"""The LLM step inside a real build: enrichment samples beside the template ones, a warm-cache
rebuild with zero requests and the same bytes, and offline mode counting ``skipped_llm``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import yaml

from datakit.build import build
from datakit.llm.config import LLMConfig
from datakit.recipe import load_recipe
from datakit.release import release_files
from llm_records import CANARY_KEY, KEY_ENV

RECIPE = {
    "name": "busi_llm",
    "seed": 11,
    "val_fraction": 0.2,
    "samples_per_shard": 50,
    "sources": [{
        "source": "busi",
        "convert": [
            {"converter": "labels", "tasks": ["diagnosis_mcq"]},
            {"converter": "llm_enrich", "tasks": ["enriched_qa"]},
        ],
    }],
}


def _recipe(tmp_path: Path):
    path = tmp_path / "busi_llm.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return load_recipe(path)


def _bytes(out: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in release_files(out)}


def _cfg(tmp_path: Path, url: str | None) -> LLMConfig:
    return LLMConfig(cache_dir=tmp_path / "cache", base_url=url, model="test-model", api_key_env=KEY_ENV,
                     concurrency=4, timeout_s=5.0, max_attempts=2, backoff_initial_s=0.005)


def test_build_with_llm_then_warm_cache_rebuild(tmp_path, server, api_key, sample_sources):
    recipe = _recipe(tmp_path)
    first = build(recipe, sample_sources, tmp_path / "a", llm_config=_cfg(tmp_path, server.url))
    assert first.summary["tasks"]["enriched_qa"] == 2 * 15  # EN + ZH for each BUSI image
    assert first.summary["tasks"]["diagnosis_mcq"] == 2 * 15
    sent = server.requests
    assert sent > 0
    # warm cache: zero HTTP requests, identical shards
    again = build(recipe, sample_sources, tmp_path / "b", llm_config=_cfg(tmp_path, server.url))
    assert server.requests == sent
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    # and with no endpoint at all the cache alone reproduces the release
    offline = build(recipe, sample_sources, tmp_path / "c", llm_config=_cfg(tmp_path, None))
    assert _bytes(tmp_path / "c") == _bytes(tmp_path / "a")
    assert again.release_sha256 == offline.release_sha256 == first.release_sha256
    for p in (tmp_path / "a").rglob("*"):
        if p.is_file():
            assert CANARY_KEY.encode() not in p.read_bytes(), p


def test_offline_cold_cache_skips_llm_samples_only(tmp_path, sample_sources, api_key):
    recipe = _recipe(tmp_path)
    result = build(recipe, sample_sources, tmp_path / "o", llm_config=_cfg(tmp_path, None))
    assert "enriched_qa" not in result.summary["tasks"]
    assert result.summary["tasks"]["diagnosis_mcq"] == 30  # template samples unaffected
    acc = result.summary["accounting"]["samples"]
    assert acc["skipped_llm"] == 30 and acc["emitted"] == 30
    manifest = pl.read_parquet(tmp_path / "o" / "manifest.parquet")
    skipped = manifest.filter(pl.col("status") == "skipped_llm")
    assert skipped.height == 30 and set(skipped["task"]) == {"enriched_qa"}
