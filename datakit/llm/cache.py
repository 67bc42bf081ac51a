"""Content-addressed, on-disk cache of LLM answers: pay once, rebuild for free.

An entry is ``<root>/<k[0:2]>/<k[2:4]>/<k>.json`` for cache key ``k`` (sha256 of the request's
key material, ``datakit.llm.request``). It holds the request's key material (images as hashes),
the raw answer text, the parsed JSON (``null`` when the answer was not JSON) and the token usage,
as canonical JSON, so the same answers give the same bytes and a cache folder can be shipped
with a release: whoever has it reproduces the LLM-derived samples without an endpoint.

Every answer the endpoint returned is stored, including malformed ones: validation is a pure
function of the stored answer, so a rebuild rejects the same answers for the same reasons
without paying for them again. Transport failures are never stored.
Writes are atomic (temporary name, then rename), so a killed build leaves no half entry.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datakit.sample import canonical_json

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedAnswer:
    key: str
    request: dict[str, Any]  # key material of the request, images as sha256
    content: str  # the answer text as returned
    parsed: Any  # json.loads(content), or None when it was not JSON
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "request": self.request,
            "content": self.content,
            "parsed": self.parsed,
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens},
            "finish_reason": self.finish_reason,
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> "CachedAnswer":
        return cls(
            key=d["key"],
            request=d["request"],
            content=d["content"],
            parsed=d["parsed"],
            prompt_tokens=int(d["usage"]["prompt_tokens"]),
            completion_tokens=int(d["usage"]["completion_tokens"]),
            finish_reason=d.get("finish_reason"),
        )


def parse_answer(content: str) -> Any:
    """The answer's JSON value, or None when the text is not one JSON document."""
    try:
        return json.loads(content)
    except (json.JSONDecodeError, TypeError):
        return None


class ResponseCache:
    """Answers by cache key. Safe for concurrent readers and writers (threads or processes)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"cache key must be a sha256 hex digest, got {key!r}")
        return self.root / key[:2] / key[2:4] / f"{key}.json"

    def get(self, key: str) -> CachedAnswer | None:
        path = self.path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            entry = CachedAnswer.from_json_dict(json.loads(raw))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            # A damaged entry is a miss (it will be asked again), never a crash or a wrong answer.
            log.warning("ignoring unreadable LLM cache entry %s (%s)", path, type(e).__name__)
            return None
        if entry.key != key:
            log.warning("ignoring LLM cache entry %s: it holds key %s", path, entry.key)
            return None
        return entry

    def put(self, entry: CachedAnswer) -> Path:
        path = self.path(entry.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{entry.key}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(canonical_json(entry.to_json_dict()) + b"\n")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("??/??/*.json"))
