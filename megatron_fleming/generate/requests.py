"""What is asked of the engine and what it answers, and their JSON-lines form.

A request is either a chat prompt (rendered with the checkpoint's chat template and tokenizer,
each `<image>` expanded to `<img>` + 256 x tiles `<IMG_CONTEXT>` + `</img>`) or token ids already
rendered and expanded. JSON lines (`fleming generate --input`)::

    {"id": "q1", "images": ["a.png"], "prompt": "<image>\\nWhat is shown?"}
    {"id": "q2", "images": ["f0.png", "f1.png"], "modality": "video", "input_ids": [...]}

Optional per-request keys: `history` (earlier turns of a prompt, `[[user, assistant], ...]`),
`system` (system prompt; default the engine's), `modality`
("video"/"volume": one tile per image, as training does), `seed`, and sampling overrides
`max_new_tokens`, `temperature`, `top_p`, `top_k`, `ignore_eos`. Answers, one line each in input
order: `{"id", "text", "token_ids", "logprobs", "finish_reason"}`, or `{"id", "error"}` for a
request that could not be run.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Union

import torch
from PIL import Image

from megatron_fleming.generate.sampling import SamplingParams

ImageInput = Union[str, Path, bytes, Image.Image]
_SAMPLING_KEYS = {f.name for f in dataclasses.fields(SamplingParams)}
_KEYS = {"id", "prompt", "input_ids", "images", "history", "system", "modality",
         "seed"} | _SAMPLING_KEYS


class RequestError(ValueError):
    """A request that cannot be run; the message names the request (and file, line)."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True)
class Request:
    """One generation. Exactly one of `prompt` and `input_ids`. `sampling` None: the engine's
    defaults; `seed` None: derived from the engine's seed and `id`."""

    id: str
    prompt: str | None = None
    input_ids: tuple[int, ...] | None = None
    images: tuple[ImageInput, ...] = ()
    history: tuple[tuple[str, str], ...] = ()  # earlier (user, assistant) turns of a prompt
    system: str | None = None
    modality: str | None = None
    sampling: SamplingParams | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.input_ids is None):
            raise RequestError(f"request {self.id!r}: give exactly one of 'prompt' and 'input_ids'",
                               self.id)
        if self.input_ids is not None and not self.input_ids:
            raise RequestError(f"request {self.id!r}: 'input_ids' is empty", self.id)


@dataclass
class Result:
    """The generated tokens (a final end token included), one log-probability per token (see
    `sampling` for the convention) and the text (tokens decoded, the end token left out).

    `logits` [tokens, vocab] (fp32, padded rows included) only when the engine is asked to keep
    them: tests and diagnostics.
    """

    id: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    text: str | None = None
    logits: torch.Tensor | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "token_ids": self.token_ids,
                "logprobs": self.logprobs, "finish_reason": self.finish_reason,
                "prompt_tokens": self.prompt_tokens}


@dataclass(frozen=True)
class PreparedRequest:
    """A request ready for the model: prompt ids, its tiles, how to decode and its seed."""

    id: str
    input_ids: list[int]
    pixel_values: torch.Tensor | None  # [tiles, C, H, W], None without images
    sampling: SamplingParams
    seed: int


def request_from_json(doc: Any, defaults: SamplingParams, where: str) -> Request:
    """A `Request` from one decoded JSON line; `where` (file:line) goes into every error."""
    if not isinstance(doc, dict):
        raise RequestError(f"{where}: a request must be a JSON object, got {type(doc).__name__}")
    if "id" not in doc:
        raise RequestError(f"{where}: the request has no 'id'")
    rid = str(doc["id"])

    def fail(message: str) -> RequestError:
        return RequestError(f"{where}: request {rid!r}: {message}", rid)

    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise fail(f"unknown keys {unknown}; known: {sorted(_KEYS)}")
    images = doc.get("images") or []
    if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
        raise fail("'images' must be a list of paths")
    ids = doc.get("input_ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, int) for i in ids)):
        raise fail("'input_ids' must be a list of integers")
    if (doc.get("prompt") is None) == (ids is None):
        raise fail("give exactly one of 'prompt' and 'input_ids'")
    history = doc.get("history") or []
    if ids is not None and history:
        raise fail("'history' goes with 'prompt'; 'input_ids' hold the whole conversation")
    pairs = isinstance(history, list) and all(
        isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in history)
    if not pairs:
        raise fail("'history' must be a list of [user, assistant] string pairs")
    for key, kind in (("system", str), ("modality", str), ("seed", int)):
        if doc.get(key) is not None and not isinstance(doc[key], kind):
            raise fail(f"'{key}' must be a {kind.__name__}, got {doc[key]!r}")
    try:
        sampling = dataclasses.replace(defaults, **{k: doc[k] for k in _SAMPLING_KEYS if k in doc})
        return Request(id=rid, prompt=doc.get("prompt"),
                       input_ids=None if ids is None else tuple(ids),
                       images=tuple(Path(p) for p in images),
                       history=tuple(tuple(turn) for turn in history), system=doc.get("system"),
                       modality=doc.get("modality"), sampling=sampling, seed=doc.get("seed"))
    except (TypeError, ValueError) as e:
        raise fail(str(e)) from None


def read_requests(path: str | Path, defaults: SamplingParams) -> Iterator[Request | RequestError]:
    """The requests of a JSONL file in order; a bad line yields its `RequestError` instead, so one
    bad line costs one answer, not the run. Relative image paths are read from the file's folder."""
    path = Path(path)
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                yield RequestError(f"{where}: not JSON: {e}")
                continue
            try:
                request = request_from_json(doc, defaults, where)
            except RequestError as e:
                yield e
                continue
            images = tuple(p if p.is_absolute() else path.parent / p for p in request.images)
            yield dataclasses.replace(request, images=images)
