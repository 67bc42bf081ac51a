"""What one build may spend on an LLM endpoint, and how it talks to it.

Validated once at construction, with the fix in the message; never rewritten. ``to_dict`` is the
form saved beside a build: it names the environment variable that holds the key, never the key,
and leaves out the endpoint address (which may carry credentials of its own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingParams:
    """Sampling parameters sent with every request; part of every cache key."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None  # sent where set; endpoints that honour it answer reproducibly

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"sampling.temperature must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"sampling.top_p must be in (0, 1], got {self.top_p}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p}
        if self.seed is not None:
            out["seed"] = self.seed
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMConfig:
    """One endpoint, one model, one cache, and the limits of one build.

    ``base_url=None`` is offline mode: answers come from the cache only, and a request the cache
    cannot answer is skipped (``skipped_llm``) instead of sent.
    """

    cache_dir: Path
    base_url: str | None = None
    model: str = "gpt-4o"
    api_key_env: str = "OPENAI_API_KEY"
    sampling: SamplingParams = field(default_factory=SamplingParams)
    concurrency: int = 8
    timeout_s: float = 120.0
    max_attempts: int = 6  # first try included
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    max_requests: int | None = None  # HTTP requests per build, retries included
    max_tokens_total: int | None = None  # prompt + completion tokens per build
    price_prompt_per_1k: float = 0.0  # currency units per 1,000 prompt tokens
    price_completion_per_1k: float = 0.0
    jitter_seed: int = 0  # backoff jitter is drawn from (jitter_seed, cache key, attempt)

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("llm model must be named (--llm-model), e.g. 'gpt-4o'")
        if not self.api_key_env or not self.api_key_env.replace("_", "").isalnum():
            raise ValueError(
                f"api_key_env must be an environment variable name such as OPENAI_API_KEY, "
                f"got {self.api_key_env!r}"
            )
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("llm base_url must start with http:// or https:// (or be None for offline)")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 (1 = no retry), got {self.max_attempts}")
        if not 0 <= self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("need 0 <= backoff_initial_s <= backoff_max_s")
        for name in ("max_requests", "max_tokens_total"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None (unlimited), got {value}")
        if self.price_prompt_per_1k < 0 or self.price_completion_per_1k < 0:
            raise ValueError("prices per 1K tokens must be >= 0")

    @property
    def offline(self) -> bool:
        return self.base_url is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "offline": self.offline,
            "api_key_env": self.api_key_env,
            "sampling": self.sampling.to_dict(),
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "max_attempts": self.max_attempts,
            "backoff_initial_s": self.backoff_initial_s,
            "backoff_max_s": self.backoff_max_s,
            "max_requests": self.max_requests,
            "max_tokens_total": self.max_tokens_total,
            "price_prompt_per_1k": self.price_prompt_per_1k,
            "price_completion_per_1k": self.price_completion_per_1k,
        }
