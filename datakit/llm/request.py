"""A chat request as data: what is asked, independent of where it is sent.

Images are held as bytes and appear in the cache key only by their sha256, so the key is small,
stable, and the same whichever file or process the bytes came from. The wire form (base64 data
URLs) is produced only when the request is actually sent.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from datakit.llm.config import SamplingParams
from datakit.sample import canonical_json

CACHE_FORMAT = 1  # bump when the key material changes shape
_MIME = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True, slots=True)
class ImagePart:
    data: bytes
    mime: str

    @classmethod
    def from_ext(cls, data: bytes, ext: str) -> "ImagePart":
        mime = _MIME.get(ext.lower())
        if mime is None:
            raise ValueError(f"cannot send a .{ext} image to a chat model; known: {sorted(_MIME)}")
        return cls(data=data, mime=mime)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: tuple[str | ImagePart, ...]

    @classmethod
    def text(cls, role: str, text: str) -> "ChatMessage":
        return cls(role=role, content=(text,))


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """One call of one task: its messages plus what makes its answer distinct."""

    task: str
    prompt_version: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int = 1024
    response_format: str = "json_object"  # "text" for tasks whose answers are not JSON (the eval judge)

    def key_material(self, model: str, sampling: SamplingParams) -> dict[str, Any]:
        """Everything the answer depends on, images as hashes (the cache key is its sha256)."""
        return {
            "cache_format": CACHE_FORMAT,
            "model": model,
            "task": self.task,
            "prompt_version": self.prompt_version,
            "sampling": {**sampling.to_dict(), "max_tokens": self.max_tokens},
            "response_format": self.response_format,
            "messages": [
                {"role": m.role, "content": [_part_key(p) for p in m.content]} for m in self.messages
            ],
        }

    def cache_key(self, model: str, sampling: SamplingParams) -> str:
        return hashlib.sha256(canonical_json(self.key_material(model, sampling))).hexdigest()

    def wire_messages(self) -> list[dict[str, Any]]:
        """The ``messages`` argument of ``chat.completions.create``."""
        out = []
        for m in self.messages:
            if all(isinstance(p, str) for p in m.content):
                out.append({"role": m.role, "content": "".join(m.content)})  # type: ignore[arg-type]
            else:
                out.append({"role": m.role, "content": [_part_wire(p) for p in m.content]})
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMReply:
    """What a converter receives for one of its requests: the parsed JSON answer (fresh or
    cached), or None with the reason there is none (``offline``, ``budget_requests``,
    ``llm_timeout`` ...). Validating ``parsed`` is the converter's job (``llm.validate``)."""

    cache_key: str
    parsed: Any = None
    reason: str = ""
    detail: str = ""
    model: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


def _part_key(part: str | ImagePart) -> dict[str, str]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    return {"type": "image", "mime": part.mime, "sha256": part.sha256}


def _part_wire(part: str | ImagePart) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    url = f"data:{part.mime};base64,{base64.b64encode(part.data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url}}
