"""A small OpenAI-compatible HTTP server for tests and benchmarks: canned answers, injected faults.

It serves ``POST /v1/chat/completions`` on 127.0.0.1 (a free port) from an aiohttp app running in
a background thread, answers with chat-completion JSON including ``usage``, and counts every
request it receives. Faults are queued (``inject``) or scheduled by request number
(``schedule``): HTTP status errors (with optional ``Retry-After``), a hang longer than the
client's timeout, a malformed (non-JSON) answer, or an error body that echoes the request's
Authorization header back (a misbehaving proxy; the client must scrub it).

Canned answers (``canned_answer``) recognise datakit's LLM tasks by their system prompt and
answer each validly; tests pass their own ``answer`` function for anything else.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import socket
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # "status" | "hang" | "malformed" | "echo_auth"
    status: int = 500
    seconds: float = 0.0
    retry_after: str | None = None


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def canned_answer(body: dict[str, Any]) -> str:
    """A valid answer for whichever datakit task the request is."""
    system = _text_of(body["messages"][0])
    user = _text_of(body["messages"][-1])
    if '"translations"' in system:
        texts = json.loads(user)["texts"]
        return json.dumps({"translations": [f"译文：{t}" for t in texts]}, ensure_ascii=False)
    if "Verified correct option:" in user:  # cot_mcq: a chain ending on the given letter
        letter = re.search(r"Verified correct option: ([A-H])", user).group(1)
        return json.dumps({"reasoning": "The image shows the finding the question asks about.\n"
                                        "Its appearance fits one option better than the others.\n"
                                        f"Answer: {letter}"})
    if "multiple-choice" in system:
        caption = user.removeprefix("Caption: ").strip()
        correct = caption.split(".")[0][:80]
        return json.dumps({
            "question": "Which procedure is shown in this video?",
            "options": [
                {"text": correct, "correct": True},
                {"text": "A dental cleaning procedure", "correct": False},
                {"text": "A cataract surgery", "correct": False},
            ],
        })
    if '"correct"' in system:
        payload = json.loads(user)
        same = payload["reference_answer"].strip().lower() == payload["response"].strip().lower()
        return json.dumps({"correct": same, "reason": "matches the reference" if same else "differs"})
    label = re.search(r"Verified label: (.+)", user).group(1).strip()
    return json.dumps({
        "question": "What is the most likely diagnosis for the finding in this image?",
        "reasoning": "The image shows a focal region whose appearance and extent fit one diagnosis.",
        "answer": f"The finding is {label}.",
    })


class FakeOpenAIServer:
    def __init__(self, *, answer: Callable[[dict[str, Any]], str] = canned_answer, latency_s: float = 0.0) -> None:
        self.answer = answer
        self.latency_s = latency_s
        self.schedule: Callable[[int], Fault | None] | None = None
        self.requests = 0  # every POST to /v1/chat/completions, faults included
        self.bodies: list[dict[str, Any]] = []
        self.auth_ok = 0  # requests whose bearer token equalled expected_key
        self.expected_key: str | None = None
        self.image_sha256: list[str] = []  # images received, decoded from their data URLs
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    async def _chat(self, request: web.Request) -> web.Response:
        self.in_flight += 1  # handlers run on the server's one event loop: no lock needed
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            n = self.requests
            self.requests += 1
            self.bodies.append(body)
            fault = self._faults.popleft() if self._faults else (self.schedule(n) if self.schedule else None)
            auth = request.headers.get("Authorization", "")
            if self.expected_key is not None and auth == f"Bearer {self.expected_key}":
                self.auth_ok += 1
            for m in body["messages"]:
                for p in m["content"] if isinstance(m["content"], list) else []:
                    if p.get("type") == "image_url":
                        data = base64.b64decode(p["image_url"]["url"].split(",", 1)[1])
                        self.image_sha256.append(hashlib.sha256(data).hexdigest())
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault is not None and fault.kind == "hang":
            await asyncio.sleep(fault.seconds)
        elif fault is not None and fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            error = {"error": {"message": f"injected {fault.status}", "type": "server_error", "code": None}}
            return web.json_response(error, status=fault.status, headers=headers)
        elif fault is not None and fault.kind == "echo_auth":
            message = f"bad request; you sent Authorization: {auth}"
            return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=fault.status)
        malformed = fault is not None and fault.kind == "malformed"
        content = "Sure! Here is the JSON: {not json" if malformed else self.answer(body)
        prompt_tokens = sum(len(_text_of(m).split()) for m in body["messages"])
        completion_tokens = len(content.split())
        return web.json_response({
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    def start(self) -> "FakeOpenAIServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.SockSite(self._runner, sock).start())
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
