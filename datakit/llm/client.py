"""The one way datakit asks an LLM: cache first, then the endpoint, within the build's limits.

Built on the official ``openai`` client, pointed at any OpenAI-compatible server, with the
client's own retries off (``max_retries=0``): retrying here lets every attempt count against the
request budget, draws backoff jitter from seeds (no process state), and names each failure with
a stable reason. 429, 5xx, timeouts and connection errors are retried with exponential backoff;
other 4xx are not; 401/403 stop the build (every other request would fail the same way).

The API key is read from the environment variable the config names and lives only inside the
``openai`` client and a ``Secret`` that scrubs it out of every message this module logs, returns
or raises. Safe to call from many threads; at most ``concurrency`` requests are in flight, and
identical requests in flight at once are sent only once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import openai

from datakit.llm.accounting import Ledger
from datakit.llm.cache import CachedAnswer, ResponseCache, parse_answer
from datakit.llm.config import LLMConfig
from datakit.llm.request import ChatRequest
from datakit.seeding import rng_for

log = logging.getLogger(__name__)

OFFLINE = "offline"
_REDACTED = "[redacted]"


class LLMAuthError(RuntimeError):
    """The endpoint refused the credentials (401/403); the message never holds the key."""


class Secret:
    """A credential that never prints itself and scrubs itself out of any text."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        # Very short values (a local server's dummy key) would mangle ordinary words.
        return text.replace(self._value, _REDACTED) if len(self._value) >= 4 else text

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMAnswer:
    """The outcome of one request: an answer (fresh or cached), or the reason there is none."""

    cache_key: str
    answer: CachedAnswer | None
    from_cache: bool = False
    reason: str = ""  # set when answer is None: offline, budget, llm_timeout, ...
    detail: str = ""  # scrubbed

    @property
    def ok(self) -> bool:
        return self.answer is not None


class LLMClient:
    def __init__(self, config: LLMConfig, cache: ResponseCache | None = None) -> None:
        self.config = config
        self.cache = cache if cache is not None else ResponseCache(config.cache_dir)
        self.ledger = Ledger(config)
        self._slots = threading.BoundedSemaphore(config.concurrency)
        self._guard = threading.Lock()
        self._key_locks: dict[str, tuple[threading.Lock, list[int]]] = {}
        self._secret = Secret("")
        self._openai: openai.OpenAI | None = None
        if not config.offline:
            key = os.environ.get(config.api_key_env, "")
            if not key:
                raise ValueError(
                    f"environment variable {config.api_key_env} is empty or unset: export the "
                    f"endpoint's API key in it, or name another variable with api_key_env "
                    f"(a local server that ignores keys accepts any non-empty value)"
                )
            self._secret = Secret(key)
            self._openai = openai.OpenAI(
                base_url=config.base_url, api_key=key, max_retries=0, timeout=config.timeout_s
            )

    def scrub(self, text: str) -> str:
        return self._secret.scrub(text)

    def summary(self) -> dict:
        return self.ledger.summary()

    def close(self) -> None:
        if self._openai is not None:
            self._openai.close()

    def complete(self, request: ChatRequest) -> LLMAnswer:
        key = request.cache_key(self.config.model, self.config.sampling)
        with self._key_lock(key):
            cached = self.cache.get(key)
            if cached is not None:
                self.ledger.cache_hit(cached.prompt_tokens, cached.completion_tokens)
                return LLMAnswer(cache_key=key, answer=cached, from_cache=True)
            if self._openai is None:
                self.ledger.skip(OFFLINE)
                return LLMAnswer(cache_key=key, answer=None, reason=OFFLINE)
            return self._send(key, request)

    def _send(self, key: str, request: ChatRequest) -> LLMAnswer:
        reason, detail = "", ""
        for attempt in range(self.config.max_attempts):
            budget = self.ledger.reserve_request()
            if budget is not None:
                self.ledger.skip(budget)
                return LLMAnswer(cache_key=key, answer=None, reason=budget, detail=detail)
            try:
                with self._slots:
                    response = self._openai.chat.completions.create(  # type: ignore[union-attr]
                        model=self.config.model,
                        messages=request.wire_messages(),  # type: ignore[arg-type]
                        max_tokens=request.max_tokens,
                        response_format={"type": request.response_format},
                        **self.config.sampling.to_dict(),
                    )
            except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
                # `from None`: the original exception may quote the request or the key.
                raise LLMAuthError(self.scrub(
                    f"{self.config.base_url} refused the key in ${self.config.api_key_env} "
                    f"(HTTP {e.status_code}): {e.message}"
                )) from None
            except openai.APIError as e:
                reason, retryable, retry_after = _classify(e)
                detail = self.scrub(str(e))[:300]
                if not retryable or attempt + 1 == self.config.max_attempts:
                    self.ledger.failed(reason)
                    log.warning("LLM %s request %s failed (%s): %s", request.task, key[:12], reason, detail)
                    return LLMAnswer(cache_key=key, answer=None, reason=reason, detail=detail)
                self.ledger.retry(reason)
                delay = self._backoff(key, attempt, retry_after)
                log.info("LLM %s request %s: %s, retry %d in %.2fs", request.task, key[:12], reason, attempt + 1, delay)
                time.sleep(delay)
                continue
            return self._store(key, request, response)
        raise AssertionError("unreachable: the loop returns on its last attempt")

    def _store(self, key: str, request: ChatRequest, response: object) -> LLMAnswer:
        choices = getattr(response, "choices", None) or []
        message = choices[0].message if choices else None
        content = (message.content if message is not None else None) or ""
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        self.ledger.answered(prompt_tokens, completion_tokens)
        entry = CachedAnswer(
            key=key,
            request=request.key_material(self.config.model, self.config.sampling),
            content=content,
            parsed=parse_answer(content),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=choices[0].finish_reason if choices else None,
        )
        self.cache.put(entry)
        return LLMAnswer(cache_key=key, answer=entry)

    def _backoff(self, key: str, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter drawn from (jitter seed, request, attempt)."""
        cfg = self.config
        base = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2.0**attempt)
        delay = base * (0.5 + 0.5 * rng_for(cfg.jitter_seed, key, attempt).random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, cfg.backoff_max_s))
        return delay

    @contextlib.contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        """Serialise work on one cache key so concurrent identical requests are paid once."""
        with self._guard:
            lock, refs = self._key_locks.setdefault(key, (threading.Lock(), [0]))
            refs[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                refs[0] -= 1
                if refs[0] == 0:
                    del self._key_locks[key]


def _classify(e: openai.APIError) -> tuple[str, bool, float | None]:
    """(reason code, retryable, Retry-After seconds) of a failed request."""
    if isinstance(e, openai.APITimeoutError):
        return "llm_timeout", True, None
    if isinstance(e, openai.APIConnectionError):
        return "llm_connection_error", True, None
    if isinstance(e, openai.APIStatusError):
        retry_after = _retry_after(e.response.headers.get("retry-after"))
        if e.status_code == 429:
            return "llm_rate_limited", True, retry_after
        if e.status_code >= 500:
            return "llm_server_error", True, retry_after
        if e.status_code in (408, 409):
            return f"llm_http_{e.status_code}", True, retry_after
        return f"llm_http_{e.status_code}", False, None
    return "llm_bad_response", False, None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the exponential delay stands
