"""Fixtures for the LLM layer: a live fake endpoint, a key in the environment, tiny records."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from datakit.llm.client import LLMClient
from datakit.llm.config import LLMConfig
from fake_openai_server import FakeOpenAIServer
from llm_records import CANARY_KEY, KEY_ENV


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, CANARY_KEY)
    return CANARY_KEY


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    srv = FakeOpenAIServer().start()
    srv.expected_key = CANARY_KEY
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def make_client(tmp_path: Path, api_key: str) -> Iterator[Callable[..., LLMClient]]:
    """A client on a server (or offline with ``server=None``), fast retries, cache under tmp."""
    clients: list[LLMClient] = []

    def make(server: FakeOpenAIServer | None, **overrides: object) -> LLMClient:
        cfg = {
            "cache_dir": tmp_path / "llm_cache",
            "base_url": server.url if server is not None else None,
            "model": "test-model",
            "api_key_env": KEY_ENV,
            "concurrency": 4,
            "timeout_s": 5.0,
            "max_attempts": 3,
            "backoff_initial_s": 0.005,
            "backoff_max_s": 0.05,
            **overrides,
        }
        client = LLMClient(LLMConfig(**cfg))  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()
