"""The API key never leaves the client: not in logs, output, cache, shards, manifests or errors."""

from __future__ import annotations

import dataclasses
import json
import logging
import traceback

import polars as pl
import pytest

from datakit.llm.client import LLMAuthError
from datakit.llm.tasks import translation_request
from datakit.sample import canonical_json
from datakit.shard_writer import AtomicTarWriter
from fake_openai_server import Fault
from llm_records import CANARY_KEY, context, enrich, label_record, video_record


def test_api_key_appears_nowhere(server, make_client, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # everything: openai, httpx, httpcore, datakit
    # No hang fault here: a timeout is no leak path (test_llm_client covers timeouts), and with
    # one every assertion below would race the clock on a loaded machine.
    client = make_client(server, max_attempts=2)
    server.inject(
        Fault("status", 429), Fault("echo_auth", 400), Fault("status", 500),
        Fault("malformed"), Fault("echo_auth", 400),
    )
    records = [label_record(i) for i in range(4)] + [video_record(i) for i in range(4)]
    outcomes = enrich(client, records, context("enriched_qa", "video_mcq"))

    out = tmp_path / "out"
    with AtomicTarWriter(out / "shard-000000.tar") as tar:
        for samples, _ in outcomes:
            for s in samples:
                tar.add_sample(s.key, s.parts())
    rows = [dataclasses.asdict(d) for _, missing in outcomes for d in missing]
    pl.DataFrame(rows).write_parquet(out / "manifest.parquet")
    summary = {"llm_config": client.config.to_dict(), "llm": client.summary()}
    (out / "summary.json").write_bytes(canonical_json(summary))
    print(json.dumps(summary))

    server.inject(Fault("echo_auth", 401))
    with pytest.raises(LLMAuthError) as raised:
        client.complete(translation_request(["one more"]))
    error_text = "".join(traceback.format_exception(raised.value))
    logging.getLogger("datakit").error("build stopped: %s", raised.value)

    # The leak paths were exercised: the key was sent, and came back in error bodies, scrubbed.
    assert server.auth_ok == server.requests > 0
    assert any("[redacted]" in r["detail"] for r in rows) and "[redacted]" in error_text
    assert any(samples for samples, _ in outcomes)

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    cache_files = [p for p in files if p.suffix == ".json" and p.name != "summary.json"]
    # every answer the client received was cached, and every cache file is checked below
    assert any(p.suffix == ".tar" for p in files) and len(cache_files) == client.summary()["answers"] > 0
    for path in files:
        assert CANARY_KEY.encode() not in path.read_bytes(), path
        if path.suffix == ".parquet":  # compressed pages hide bytes from grep: read the cells
            assert CANARY_KEY not in pl.read_parquet(path).write_csv(), path
    captured = capfd.readouterr()
    logged = caplog.text + "".join(str(r.args) + str(r.msg) for r in caplog.records)
    for text in (logged, captured.out, captured.err, error_text, repr(client.config), str(client.__dict__)):
        assert CANARY_KEY not in text
