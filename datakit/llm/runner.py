"""Runs converters that ask an LLM: their requests, in rounds, through one client.

The build's one ``LLMRunner`` (datatrove's ``InferenceRunner`` idea) takes the records of a slice
and a converter step, collects every request the converter names for each record
(``ConverterSpec.requests``), asks them all at the client's concurrency (identical requests once;
the cache answers what it holds), hands the replies back in ``ConvertContext.answers`` and asks
again until no record names a new request (a translation of an answer is a second round); then
it runs the converter on each record. Outputs come back in record order, so nothing depends on
which answer arrived first.

Without a client (no endpoint and no cache configured) every request gets an ``offline`` reply
without being sent, and the converter reports its LLM samples as ``skipped_llm``.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from datakit.converters.base import ConvertContext, ConverterSpec, Missing
from datakit.errors import Rejected
from datakit.llm.client import OFFLINE, LLMClient
from datakit.llm.request import ChatRequest, LLMReply
from datakit.record import LoadedRecord
from datakit.sample import Sample

MAX_ROUNDS = 8  # a converter still naming new requests after this many rounds is a bug


class LLMRunner:
    def __init__(self, client: LLMClient | None) -> None:
        self.client = client
        self.requests_made = 0  # requests converters named (before the cache and dedup)

    @property
    def online(self) -> bool:
        return self.client is not None and not self.client.config.offline

    def ask(self, requests: Sequence[ChatRequest]) -> list[LLMReply]:
        """Replies to ``requests`` in order; concurrent when there is a client."""
        self.requests_made += len(requests)
        if self.client is None:
            return [LLMReply(cache_key="", reason=OFFLINE) for _ in requests]
        client = self.client
        model = client.config.model

        def one(request: ChatRequest) -> LLMReply:
            answer = client.complete(request)
            if answer.answer is None:
                return LLMReply(cache_key=answer.cache_key, reason=answer.reason, detail=answer.detail, model=model)
            return LLMReply(cache_key=answer.cache_key, parsed=answer.answer.parsed, model=model)

        if len(requests) <= 1:
            return [one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=client.config.concurrency, thread_name_prefix="llm") as pool:
            return list(pool.map(one, requests))

    def convert(self, spec: ConverterSpec, items: Sequence[tuple[LoadedRecord, ConvertContext]]
                ) -> list[list[Sample | Missing] | Rejected]:
        """``spec.fn`` on every (record, context), after answering the requests it names; a
        record whose data the converter refuses gives its ``Rejected`` instead of outputs."""
        answers: list[dict[str, LLMReply]] = [{} for _ in items]
        out: list[list[Sample | Missing] | Rejected | None] = [None] * len(items)
        if spec.requests is not None:
            for _ in range(MAX_ROUNDS):
                asked: list[tuple[int, str, ChatRequest]] = []
                for i, (loaded, ctx) in enumerate(items):
                    if out[i] is not None:
                        continue
                    try:
                        named = spec.requests(loaded, dataclasses.replace(ctx, answers=answers[i]))
                    except Rejected as rej:
                        out[i] = rej
                        continue
                    asked += [(i, name, req) for name, req in sorted(named.items()) if name not in answers[i]]
                if not asked:
                    break
                for (i, name, _), reply in zip(asked, self.ask([req for _, _, req in asked])):
                    answers[i][name] = reply
            else:
                raise RuntimeError(f"converter {spec.name}: still naming new requests after {MAX_ROUNDS} rounds")
        for i, (loaded, ctx) in enumerate(items):
            if out[i] is None:
                try:
                    out[i] = spec.fn(loaded, dataclasses.replace(ctx, answers=answers[i]))
                except Rejected as rej:
                    out[i] = rej
        return out  # type: ignore[return-value]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests_named": self.requests_made}
        if self.client is not None:
            out["client"] = self.client.summary()
        return out

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
