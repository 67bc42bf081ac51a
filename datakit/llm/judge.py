"""The LLM judge: does a response match the reference answer? Reused by GRPO and evaluation.

Same client, cache and validation as synthesis, so a rerun of an evaluation or a reward pass
over the same responses costs nothing. A judge that cannot answer says so (``verdict`` is None
with the reason) rather than guessing; the caller decides whether that scores as wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from datakit.llm.client import LLMClient
from datakit.llm.tasks import judge_request
from datakit.llm.validate import ValidationStats, validate


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    correct: bool | None  # None: no usable verdict (see reason)
    explanation: str = ""
    reason: str = ""  # why there is no verdict: offline, budget, malformed_json, ...
    cache_key: str = ""


def judge(
    client: LLMClient, *, question: str, reference: str, response: str, stats: ValidationStats | None = None
) -> Judgement:
    answer = client.complete(judge_request(question=question, reference=reference, response=response))
    if answer.answer is None:
        return Judgement(correct=None, reason=answer.reason, cache_key=answer.cache_key)
    verdict = validate("judge", answer.answer.parsed)
    if stats is not None:
        stats.record("judge", verdict)
    if not verdict.ok:
        return Judgement(correct=None, reason=verdict.reason, cache_key=answer.cache_key)
    parsed = answer.answer.parsed
    return Judgement(correct=bool(parsed["correct"]), explanation=parsed["reason"], cache_key=answer.cache_key)
