"""The client over real HTTP: answers, retries, timeouts, budgets, accounting, concurrency."""

from __future__ import annotations

import pytest

from datakit.llm.accounting import REQUEST_BUDGET, TOKEN_BUDGET
from datakit.llm.client import LLMAuthError
from datakit.llm.judge import judge
from datakit.converters.base import SKIPPED_LLM
from datakit.llm.tasks import translation_request, video_mcq_request
from fake_openai_server import Fault
from llm_records import context, enrich, video_record


def test_success_is_parsed_cached_and_costed(server, make_client):
    client = make_client(server, price_prompt_per_1k=2.5, price_completion_per_1k=10.0)
    answer = client.complete(translation_request(["A hypoechoic mass."]))
    assert answer.ok and not answer.from_cache
    assert answer.answer.parsed == {"translations": ["译文：A hypoechoic mass."]}
    assert server.requests == 1 and server.auth_ok == 1
    assert answer.cache_key in client.cache
    s = client.summary()
    p, c = answer.answer.prompt_tokens, answer.answer.completion_tokens
    assert p > 0 and c > 0
    assert s["tokens"] == {"prompt": p, "completion": c, "total": p + c}
    assert s["cost"] == pytest.approx(p / 1000 * 2.5 + c / 1000 * 10.0)
    assert s["requests_sent"] == 1 and s["answers"] == 1 and s["retries"] == {}


def test_429_then_success_is_retried_and_counted(server, make_client):
    client = make_client(server)
    server.inject(Fault("status", 429, retry_after="0.01"), Fault("status", 503))
    answer = client.complete(video_mcq_request("Clip shows an endoscopic biopsy. Bleeding stops."))
    assert answer.ok
    assert server.requests == 3
    s = client.summary()
    assert s["retries"] == {"llm_rate_limited": 1, "llm_server_error": 1}
    assert s["requests_sent"] == 3 and s["answers"] == 1 and s["failures"] == {}


def test_timeout_is_retried_then_given_up_with_a_reason(server, make_client):
    # A hang far beyond the timeout, and a timeout far beyond a normal answer's time (a few ms),
    # so neither the retry nor the success below races the clock on a loaded machine.
    client = make_client(server, timeout_s=1.0, max_attempts=2)
    server.inject(Fault("hang", seconds=2.5))
    assert client.complete(translation_request(["first"])).ok
    assert client.summary()["retries"] == {"llm_timeout": 1}

    server.inject(Fault("hang", seconds=2.5), Fault("hang", seconds=2.5))
    answer = client.complete(translation_request(["second"]))
    assert not answer.ok and answer.reason == "llm_timeout"
    assert answer.cache_key not in client.cache  # a transport failure is never cached
    assert client.summary()["failures"] == {"llm_timeout": 1}


def test_client_errors_are_not_retried(server, make_client):
    client = make_client(server)
    server.inject(Fault("status", 400))
    answer = client.complete(translation_request(["x-ray"]))
    assert not answer.ok and answer.reason == "llm_http_400"
    assert server.requests == 1


def test_auth_failure_stops_with_a_clear_error(server, make_client):
    client = make_client(server)
    server.inject(Fault("status", 401))
    with pytest.raises(LLMAuthError, match="FLEMING_TEST_LLM_KEY"):
        client.complete(translation_request(["x-ray"]))


def test_500_storm_stops_at_the_request_budget_and_accounts_for_every_record(server, make_client):
    server.schedule = lambda n: Fault("status", 500) if n >= 3 else None  # 3 answers, then a storm
    client = make_client(server, max_requests=12, max_attempts=3, concurrency=4)
    records = [video_record(i) for i in range(10)]
    outcomes = enrich(client, records, context("video_mcq", langs=("en",)))

    assert server.requests == 12  # never past the budget, even with 4 threads
    assert len(outcomes) == len(records)  # input order, none lost
    assert all(s.group == r.record.uid for (samples, _), r in zip(outcomes, records) for s in samples)
    emitted = [s for samples, _ in outcomes for s in samples]
    drops = [d for _, missing in outcomes for d in missing]
    assert len(emitted) == 3 and len(emitted) + len(drops) == 10
    assert {d.status for d in drops} == {SKIPPED_LLM}
    reasons = {d.reason for d in drops}
    assert reasons <= {"llm_server_error", REQUEST_BUDGET} and REQUEST_BUDGET in reasons
    assert {(s.task, s.lang) for s in emitted} == {("video_mcq", "en")}
    assert client.summary()["requests_sent"] == 12


def test_token_budget_stops_new_requests(server, make_client):
    client = make_client(server, max_tokens_total=1)
    assert client.complete(translation_request(["one"])).ok  # the budget is checked before sending
    answer = client.complete(translation_request(["two"]))
    assert not answer.ok and answer.reason == TOKEN_BUDGET
    assert server.requests == 1


def test_concurrency_is_limited_and_identical_requests_are_paid_once(server, make_client):
    server.latency_s = 0.05
    client = make_client(server, concurrency=3)
    records = [video_record(i) for i in range(12)] + [video_record(100, caption=video_record(0).record.text)]
    enrich(client, records, context("video_mcq", langs=("en",)))
    assert server.max_in_flight == 3
    assert server.requests == 12  # record 100 repeats record 0's caption: served from the cache
    assert client.summary()["cache_hits"] == 1


def test_judge_gives_a_verdict_and_is_cached(server, make_client):
    client = make_client(server)
    yes = judge(client, question="Diagnosis?", reference="Glioma", response="glioma")
    no = judge(client, question="Diagnosis?", reference="Glioma", response="Meningioma")
    assert yes.correct is True and no.correct is False and yes.explanation
    again = judge(client, question="Diagnosis?", reference="Glioma", response="glioma")
    assert again == yes and server.requests == 2
