"""The response cache: what the key covers, atomic entries, warm reruns, offline mode."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from datakit.llm.cache import CachedAnswer, ResponseCache
from datakit.llm.config import SamplingParams
from datakit.llm.request import ImagePart
from datakit.converters.base import SKIPPED_LLM
from datakit.llm.tasks import label_enrichment_request
from datakit.shard_writer import AtomicTarWriter
from llm_records import context, enrich, label_record, png_bytes, video_record


def _request(image: bytes, label: str = "benign"):
    return label_enrichment_request(ImagePart(image, "image/png"), modality="ultrasound", label=label)


def test_cache_key_covers_model_params_images_and_prompt_version():
    base = _request(png_bytes(1)).cache_key("m", SamplingParams())
    assert _request(bytes(png_bytes(1))).cache_key("m", SamplingParams()) == base  # content, not identity
    others = [
        _request(png_bytes(2)).cache_key("m", SamplingParams()),
        _request(png_bytes(1), "malignant").cache_key("m", SamplingParams()),
        _request(png_bytes(1)).cache_key("other-model", SamplingParams()),
        _request(png_bytes(1)).cache_key("m", SamplingParams(temperature=0.7)),
        _request(png_bytes(1)).cache_key("m", SamplingParams(seed=3)),
    ]
    assert len({base, *others}) == 6
    material = json.dumps(_request(png_bytes(1)).key_material("m", SamplingParams()))
    assert "base64" not in material and ImagePart(png_bytes(1), "image/png").sha256 in material


def test_entries_are_fanned_out_atomic_and_damage_is_a_miss(tmp_path, caplog):
    cache = ResponseCache(tmp_path)
    key = "ab" + "c" * 62
    entry = CachedAnswer(key=key, request={"x": 1}, content='{"a": 1}', parsed={"a": 1},
                         prompt_tokens=3, completion_tokens=4)
    path = cache.put(entry)
    assert path == tmp_path / "ab" / "cc" / f"{key}.json"
    assert cache.get(key) == entry and len(cache) == 1
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    path.write_bytes(path.read_bytes()[:20])  # a truncated entry
    with caplog.at_level(logging.WARNING):
        assert cache.get(key) is None
    assert "unreadable LLM cache entry" in caplog.text


def _build(client, out: Path) -> bytes:
    """Synthesize a small mixed set and write it as one tar; return the tar's bytes."""
    records = [label_record(i, ("benign", "malignant")[i % 2]) for i in range(5)]
    records += [video_record(i) for i in range(5)]
    with AtomicTarWriter(out) as tar:
        for samples, _ in enrich(client, records, context("enriched_qa", "video_mcq")):
            for s in samples:
                tar.add_sample(s.key, s.parts())
    return out.read_bytes()


def test_warm_cache_rerun_makes_zero_requests_and_identical_bytes(server, make_client, tmp_path):
    cold = make_client(server)
    first = _build(cold, tmp_path / "a.tar")
    sent = server.requests
    assert sent > 0 and cold.summary()["requests_sent"] == sent
    warm = make_client(server)
    second = _build(warm, tmp_path / "b.tar")
    assert server.requests == sent and warm.summary()["requests_sent"] == 0
    assert warm.summary()["cache_hits"] == sent + cold.summary()["cache_hits"]
    assert second == first
    # A shipped cache reproduces the same bytes with no endpoint at all.
    offline = make_client(None)
    assert _build(offline, tmp_path / "c.tar") == first
    assert offline.summary()["skipped"] == {}


def test_the_cache_itself_is_reproducible(server, make_client, tmp_path):
    _build(make_client(server, cache_dir=tmp_path / "c1"), tmp_path / "a.tar")
    sent = server.requests
    _build(make_client(server, cache_dir=tmp_path / "c2", concurrency=1), tmp_path / "b.tar")
    files1 = {p.relative_to(tmp_path / "c1"): p.read_bytes() for p in (tmp_path / "c1").rglob("*") if p.is_file()}
    files2 = {p.relative_to(tmp_path / "c2"): p.read_bytes() for p in (tmp_path / "c2").rglob("*") if p.is_file()}
    assert files1 == files2
    assert len([p for p in files1 if p.suffix == ".json"]) == sent == server.requests - sent


def test_offline_cold_cache_skips_llm_samples_and_counts_them(make_client, tmp_path):
    client = make_client(None)
    outcomes = enrich(client, [label_record(1), video_record(1)], context("enriched_qa", "video_mcq"))
    assert all(samples == [] for samples, _ in outcomes)
    drops = [d for _, missing in outcomes for d in missing]
    # label record: enriched_qa en+zh, plus video_mcq en+zh dropped as missing_caption (not an LLM skip)
    skipped = [d for d in drops if d.status == SKIPPED_LLM]
    assert {d.reason for d in skipped} == {"offline"} and len(skipped) == 4
    assert client.summary()["requests_sent"] == 0 and not (tmp_path / "llm_cache").exists()
