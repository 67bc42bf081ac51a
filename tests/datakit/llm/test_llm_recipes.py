"""The committed recipes' LLM steps against a local OpenAI-compatible server: the `all` build asks
(label enrichment, video multiple choice, every translation), every English sample gets its
Chinese twin, a warm-cache rebuild asks nothing and gives the same bytes; offline the same
recipe builds to its committed lock with the LLM samples as `skipped_llm` rows."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import polars as pl

from datakit.build import build
from datakit.llm.config import LLMConfig
from datakit.recipe import load_recipe
from datakit.release import compare_with_lock, release_files
from datakit.shard_writer import iter_samples
from llm_records import KEY_ENV

REPO = Path(__file__).resolve().parents[3]
FREE_TEXT = {"caption", "report", "summary"}


def _cfg(cache: Path, url: str | None) -> LLMConfig:
    return LLMConfig(cache_dir=cache, base_url=url, model="test-model", api_key_env=KEY_ENV, concurrency=4,
                     timeout_s=10.0, max_attempts=2, backoff_initial_s=0.005)


def _bytes(out: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in release_files(out)}


def _kind(system: str) -> str:
    return "translate" if '"translations"' in system else "video_mcq" if "multiple-choice" in system else "enrichment"


def _twin(key: str) -> tuple:
    """(key up to the language, language, question number if any): twins differ in language only."""
    parts = key.split("-")
    i = max(j for j, p in enumerate(parts) if p in ("en", "zh"))
    return ("-".join(parts[:i]), parts[i], *parts[i + 1:])


def _emitted(out: Path) -> pl.DataFrame:
    m = pl.read_parquet(out / "manifest.parquet")
    return m.filter((pl.col("kind") == "sample") & (pl.col("status") == "emitted"))


def test_all_with_an_endpoint_then_warm_cache(tmp_path, server, api_key, sample_sources):
    recipe = load_recipe("all")
    first = build(recipe, sample_sources, tmp_path / "a", llm_config=_cfg(tmp_path / "cache", server.url))
    sent = server.requests
    kinds = Counter(_kind(b["messages"][0]["content"]) for b in server.bodies)
    assert sent > 0 and kinds["enrichment"] > 0 and kinds["video_mcq"] == 3 and kinds["translate"] > 0
    emitted = _emitted(first.out)
    assert first.summary["accounting"]["samples"]["skipped_llm"] == 0
    tasks = Counter(zip(emitted["task"], emitted["lang"]))
    for task in ("enriched_qa", "video_mcq", "caption_brief", "report", "summary", "vqa_open", "vqa_mcq"):
        assert tasks[(task, "en")] == tasks[(task, "zh")] > 0, task
    # every English sample (free text included) has its Chinese twin, emitted
    keys = set(emitted["id"])
    english = [k for k in keys if _twin(k)[1] == "en"]
    twins = {_twin(k) for k in keys}
    assert len(english) == len(keys) / 2 and all((_twin(k)[0], "zh", *_twin(k)[2:]) in twins for k in english)
    docs = [json.loads(p["json"]) for t in sorted(first.out.glob("*/*.tar")) for _, p in iter_samples(t)]
    zh_free = [t["answer"] for d in docs if d["lang"] == "zh" for t in d["turns"] if t["question_type"] in FREE_TEXT]
    assert zh_free and all(a.startswith("译文：") for a in zh_free)  # the server's translations, stored
    assert first.summary["llm"]["client"]["requests_sent"] == sent

    again = build(recipe, sample_sources, tmp_path / "b", llm_config=_cfg(tmp_path / "cache", server.url))
    assert server.requests == sent and again.summary["llm"]["client"]["requests_sent"] == 0
    assert _bytes(again.out) == _bytes(first.out) and again.release_sha256 == first.release_sha256


def test_offline_all_is_its_lock_with_llm_samples_skipped(all_build):
    assert compare_with_lock(all_build.out, REPO / "shards" / "all.lock") == []
    manifest = pl.read_parquet(all_build.out / "manifest.parquet")
    skipped = manifest.filter((pl.col("kind") == "sample") & (pl.col("status") == "skipped_llm"))
    assert set(skipped["reason"]) == {"offline"}
    assert {"enriched_qa", "video_mcq", "caption_brief", "report", "summary", "vqa_open"} <= set(skipped["task"])
    assert set(skipped.filter(pl.col("task").is_in(["caption_brief", "report", "summary", "vqa_open"]))["lang"]) == {"zh"}
