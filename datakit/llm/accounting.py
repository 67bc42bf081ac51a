"""What a build spent on its LLM endpoint, and whether it may spend more.

One ``Ledger`` per build, shared by all worker threads: it hands out request slots against the
request and token budgets, counts retries, cache hits and skips by reason, and adds up tokens
and cost. ``summary()`` is the block the build prints and saves.

The token budget is checked before each request against the tokens already reported, so with
``concurrency`` requests in flight a build can overshoot it by at most that many answers.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from datakit.llm.config import LLMConfig

REQUEST_BUDGET = "request_budget_exhausted"
TOKEN_BUDGET = "token_budget_exhausted"


class Ledger:
    def __init__(self, config: LLMConfig) -> None:
        self._cfg = config
        self._lock = threading.Lock()
        self.requests_sent = 0
        self.answers = 0  # requests that returned an answer (any content)
        self.retries: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()  # requests that ended without an answer
        self.skipped: Counter[str] = Counter()  # requests never sent: offline, budget
        self.cache_hits = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_prompt_tokens = 0
        self.cached_completion_tokens = 0

    def reserve_request(self) -> str | None:
        """Take one request slot; return the budget reason instead when none is left."""
        with self._lock:
            if self._cfg.max_requests is not None and self.requests_sent >= self._cfg.max_requests:
                return REQUEST_BUDGET
            used = self.prompt_tokens + self.completion_tokens
            if self._cfg.max_tokens_total is not None and used >= self._cfg.max_tokens_total:
                return TOKEN_BUDGET
            self.requests_sent += 1
            return None

    def answered(self, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self.answers += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens

    def cache_hit(self, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self.cache_hits += 1
            self.cached_prompt_tokens += prompt_tokens
            self.cached_completion_tokens += completion_tokens

    def retry(self, reason: str) -> None:
        with self._lock:
            self.retries[reason] += 1

    def failed(self, reason: str) -> None:
        with self._lock:
            self.failures[reason] += 1

    def skip(self, reason: str) -> None:
        with self._lock:
            self.skipped[reason] += 1

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens / 1000.0 * self._cfg.price_prompt_per_1k
            + completion_tokens / 1000.0 * self._cfg.price_completion_per_1k
        )

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "model": self._cfg.model,
                "offline": self._cfg.offline,
                "requests_sent": self.requests_sent,
                "answers": self.answers,
                "retries": dict(sorted(self.retries.items())),
                "failures": dict(sorted(self.failures.items())),
                "skipped": dict(sorted(self.skipped.items())),
                "cache_hits": self.cache_hits,
                "tokens": {
                    "prompt": self.prompt_tokens,
                    "completion": self.completion_tokens,
                    "total": self.prompt_tokens + self.completion_tokens,
                },
                "cost": round(self.cost(self.prompt_tokens, self.completion_tokens), 6),
                "cost_saved_by_cache": round(
                    self.cost(self.cached_prompt_tokens, self.cached_completion_tokens), 6
                ),
                "budget": {
                    "max_requests": self._cfg.max_requests,
                    "max_tokens_total": self._cfg.max_tokens_total,
                },
            }
