"""The LLM judge of open answers, through datakit's LLM layer (cached, budgeted, any
OpenAI-compatible endpoint; the key only from the environment).

The request follows MedEvalKit's ``get_compare_messages`` contract — one user message with the
question, the standard answer and the user's answer; the reply ends in ``<judge>0</judge>``
(correct) or ``<judge>1</judge>`` (incorrect) — in our own wording. The judge reads the answer as
the model gave it, after ``\\boxed{}`` / ``<answer>`` extraction (not the marker-stripped span).
Every request is content-addressed in the cache, so re-scoring the same responses asks nothing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from datakit.benchmarks.items import BenchItem
from datakit.llm.client import LLMClient
from datakit.llm.config import LLMConfig
from datakit.llm.request import ChatMessage, ChatRequest
from megatron_fleming.eval.answers import extract_answer, parse_judge

PROMPT_VERSION = "v1"
_PROMPT = """You are grading an answer to a medical question against its standard answer. The user's answer is correct when it means the same as the standard answer or states a valid reading of it (synonyms, abbreviations and extra correct detail are fine); it is incorrect when it contradicts the standard answer, misses it, or hedges between several answers.

The question is: {question}

The standard answer: {answer}

The user's answer: {response}

Reply in exactly this format, where 0 means correct and 1 means incorrect:
<think>{{one or two sentences of reasoning}}</think>
<judge>{{0 or 1}}</judge>"""


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgeConfig:
    """Where the judge is and what it may spend; validated by ``LLMConfig``."""

    base_url: str | None
    model: str
    cache_dir: Path  # no default: a folder under the current directory would change with it
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    max_requests: int | None = None
    timeout_s: float = 120.0  # per attempt
    max_attempts: int = 6  # first try included

    def llm_config(self) -> LLMConfig:
        return LLMConfig(cache_dir=Path(self.cache_dir), base_url=self.base_url, model=self.model,
                         api_key_env=self.api_key_env, concurrency=self.concurrency,
                         max_requests=self.max_requests, timeout_s=self.timeout_s,
                         max_attempts=self.max_attempts)


def judge_request(item: BenchItem, response: str) -> ChatRequest:
    return compare_request(item.question, item.answer, response)


def compare_request(question: str, answer: str, response: str) -> ChatRequest:
    """The judge's request for one (question, standard answer, model response)."""
    text = _PROMPT.format(question=question, answer=answer,
                          response=extract_answer(response, markers=False))
    return ChatRequest(task="eval_judge", prompt_version=PROMPT_VERSION, messages=(ChatMessage.text("user", text),),
                       max_tokens=512, response_format="text")


class Judge:
    """Judges (item, response) pairs concurrently; one client, one cache, one budget per run."""

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config
        self.client = LLMClient(config.llm_config())

    def verdicts(self, pairs: Sequence[tuple[BenchItem, str]]) -> list[tuple[bool | None, dict[str, Any]]]:
        """(verdict, detail) per pair, in order; verdict None when the judge gave none."""
        return self.compare([(item.question, item.answer, response) for item, response in pairs])

    def compare(self, triples: Sequence[tuple[str, str, str]]) -> list[tuple[bool | None, dict[str, Any]]]:
        """(verdict, detail) per (question, standard answer, response), in order; verdict None
        when the judge gave none (``detail["failure"]`` says why: a timeout, no verdict...)."""
        def one(triple: tuple[str, str, str]) -> tuple[bool | None, dict[str, Any]]:
            answer = self.client.complete(compare_request(*triple))
            if answer.answer is None:
                return None, {"cache_key": answer.cache_key, "failure": answer.reason}
            verdict = parse_judge(answer.answer.content)
            detail = {"cache_key": answer.cache_key, "reply": answer.answer.content[-300:]}
            if verdict is None:
                detail["failure"] = "no_judge_tag"
            return verdict, detail

        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            return list(pool.map(one, triples))

    def summary(self) -> dict[str, Any]:
        return {"model": self.config.model, "offline": self.config.base_url is None,
                "prompt_version": PROMPT_VERSION, **self.client.summary()}

    def close(self) -> None:
        self.client.close()
