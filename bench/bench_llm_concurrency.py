"""LLM step throughput: concurrency 1 vs the configured concurrency, same run, same server.

A 1,000-request video multiple-choice synthesis (English only: one request per record) against
the local OpenAI-compatible test server with a fixed artificial latency (20 ms by default), run
in its own process so the server does not share the client's interpreter lock. Each run starts
from an empty cache, so every record is a real HTTP request; the server's request counter is
checked. Prints requests/s of both runs and their ratio.

    .venv/bin/python bench/bench_llm_concurrency.py [--requests 1000] [--latency-ms 20] [--concurrency N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "datakit" / "llm")]

from datakit.converters.base import ConvertContext  # noqa: E402
from datakit.llm.client import LLMClient  # noqa: E402
from datakit.llm.config import LLMConfig  # noqa: E402
from datakit.llm.runner import LLMRunner  # noqa: E402
from datakit.registry import get_converter  # noqa: E402
from datakit.sample import Sample  # noqa: E402
from datakit.record import LoadedRecord, Media, RawRecord  # noqa: E402

KEY_ENV = "FLEMING_BENCH_LLM_KEY"


def _serve(latency_s: float, port_q: mp.Queue, stop_q: mp.Queue, count_q: mp.Queue) -> None:
    from fake_openai_server import FakeOpenAIServer

    server = FakeOpenAIServer(latency_s=latency_s).start()
    port_q.put(server.port)
    stop_q.get()
    count_q.put(server.requests)
    server.stop()


def _records(n: int) -> list[LoadedRecord]:
    frame = Media(data=b"\x89PNG-bench-frame", ext="png", width=1, height=1)
    out = []
    for i in range(n):
        raw = RawRecord(source="medvideocap", record_id=f"clip_{i}", modality="video",
                        text=f"Clip {i} shows step {i} of a laparoscopic suture. The knot is tied.")
        out.append(LoadedRecord(record=raw, media=[frame]))
    return out


def _run(url: str, concurrency: int, records: list[LoadedRecord]) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as cache:
        client = LLMClient(LLMConfig(cache_dir=Path(cache), base_url=url, model="bench", api_key_env=KEY_ENV,
                                     concurrency=concurrency, timeout_s=30.0))
        runner = LLMRunner(client)  # what a build's slice converts through
        ctx = ConvertContext(seed=0, tasks=("video_mcq",), langs=("en",))
        start = time.perf_counter()
        outputs = runner.convert(get_converter("llm_enrich"), [(r, ctx) for r in records])
        emitted = sum(isinstance(x, Sample) for out in outputs for x in out)
        elapsed = time.perf_counter() - start
        client.close()
    summary = client.summary()
    assert emitted == len(records) and summary["requests_sent"] == len(records), summary
    return elapsed, summary


def main() -> None:
    default_c = next(f.default for f in fields(LLMConfig) if f.name == "concurrency")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--concurrency", type=int, default=default_c, help=f"default: LLMConfig's ({default_c})")
    args = p.parse_args()
    os.environ.setdefault(KEY_ENV, "bench-local-key")

    ctx = mp.get_context("spawn")
    port_q, stop_q, count_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_serve, args=(args.latency_ms / 1000.0, port_q, stop_q, count_q))
    proc.start()
    try:
        url = f"http://127.0.0.1:{port_q.get(timeout=30)}/v1"
        records = _records(args.requests)
        t1, _ = _run(url, 1, records)
        tn, _ = _run(url, args.concurrency, records)
    finally:
        stop_q.put(None)
        served = count_q.get(timeout=30)
        proc.join(timeout=30)
    assert served == 2 * args.requests, f"server saw {served} requests, expected {2 * args.requests}"
    r1, rn = args.requests / t1, args.requests / tn
    print(f"requests={args.requests} latency_ms={args.latency_ms:g} cpus={os.cpu_count()}")
    print(f"concurrency=1: {t1:.2f} s, {r1:.1f} req/s")
    print(f"concurrency={args.concurrency}: {tn:.2f} s, {rn:.1f} req/s")
    print(f"ratio={rn / r1:.2f}x (ideal, latency-bound: {args.concurrency}x)")


if __name__ == "__main__":
    main()
