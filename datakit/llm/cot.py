"""Chain-of-thought for multiple-choice samples (LLM task ``cot_mcq`` of ``llm_enrich``).

The paper adds CoT data "to address the shortcut learning problem prevalent in multiple-choice
medical questions". For every English multiple-choice sample the record's earlier conversion
steps made (``ConvertContext.earlier``: the template converters run first), the LLM gets the
images, the question, the options and the verified letter, and writes a reasoning chain that
must end with ``Answer: <letter>``. Validation (``validate.check_cot``) rejects a chain that ends
on no letter (``cot_no_final_letter``) or on another one (``cot_wrong_letter``); every request and
its verdict are cached like the other tasks. The sample it gives is the MCQ's question with the
CoT instruction and the reply in the shared form of ``datakit.cot``
(``<think>…</think><answer>X</answer>``).

It is part of the converter capability (``converters.base``): ``cot_requests`` names one request
per MCQ (round one) and, once a chain is accepted, its Chinese translation when the MCQ has a
Chinese twin (round two, ``translate_zh``, validated again); ``cot_outputs`` turns the answers
into samples, and every planned CoT sample the answers cannot give into a ``Missing``
(``skipped_llm`` offline or without an answer, ``rejected`` when validation fails).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from datakit.cot import COT_INSTRUCTION, LETTERS, parse_reply, render_reply, split_options
from datakit.llm.replies import checked, translated, translation_requests
from datakit.llm.request import ChatRequest, ImagePart
from datakit.llm.tasks import COT_MCQ, cot_request
from datakit.record import LoadedRecord
from datakit.sample import IMAGE_TOKEN, Sample, sample_key

if TYPE_CHECKING:
    from datakit.converters.base import ConvertContext, Missing

TASK = "cot_mcq"
MAX_IMAGES = 12  # a slice sequence or video beyond this is not sent (rejected: too_many_images)
_OPTION = re.compile(r"^\s*\(?[A-H][.):]\s")


def twin_key(key: str, lang: str) -> str:
    """The key of ``key``'s sample in ``lang`` (keys end ``-<task>-<lang>[-<n>]``, sample.py)."""
    parts = key.split("-")
    i = max(i for i, p in enumerate(parts) if p in ("en", "zh"))
    return "-".join(parts[:i] + [lang] + parts[i + 1:])


def cot_question(mcq: Sample, lang: str) -> str:
    """The MCQ's human turn, its closing "answer with the letter" line replaced by the CoT
    instruction (a last line that is an option is kept)."""
    lines = mcq.conversation[0]["value"].rstrip().splitlines()
    if lines and not _OPTION.match(lines[-1]):
        lines = lines[:-1]
    return "\n".join([*lines, COT_INSTRUCTION[lang]])


class _Planned:
    """One English MCQ of the record and what its CoT samples need: slot name, languages, gold
    letter, images, and the reason it cannot be asked (``problem``)."""

    def __init__(self, mcq: Sample, number: int, by_key: dict[str, Sample], langs: tuple[str, ...]) -> None:
        self.mcq = mcq
        self.slot = f"cot_{mcq.task}" + (f"_{number + 1}" if number else "")
        self.langs = [lang for lang in langs if lang == "en" or twin_key(mcq.key, lang) in by_key]
        self.twins = {lang: by_key[twin_key(mcq.key, lang)] for lang in self.langs if lang != "en"}
        self.gold = mcq.answer.strip()
        self.images = [m for m in mcq.media if m.ext in ("png", "jpg")]
        self.problem = ""
        if self.gold not in LETTERS[: len(mcq.options or ())]:
            self.problem = "mcq_answer_not_a_letter"
        elif not self.images or len(self.images) > MAX_IMAGES:
            self.problem = "too_many_images" if self.images else "missing_image"

    @property
    def name(self) -> str:
        return f"{TASK}:{self.slot}"

    def request(self) -> ChatRequest:
        text = self.mcq.conversation[0]["value"].replace(IMAGE_TOKEN, "").strip()
        parsed = split_options(text)
        return cot_request([ImagePart.from_ext(m.data, m.ext) for m in self.images],
                           question=parsed[0] if parsed else text, options=list(self.mcq.options or ()),
                           answer=self.gold)


def _planned(ctx: "ConvertContext") -> list[_Planned]:
    """The record's English multiple choice from the earlier steps, by key."""
    by_key = {s.key: s for s in ctx.earlier if isinstance(s, Sample)}
    mcqs = sorted((s for s in by_key.values() if s.question_type == "mcq" and s.lang == "en" and s.options),
                  key=lambda s: s.key)
    seen: dict[str, int] = {}
    out = []
    for mcq in mcqs:
        number = seen.get(mcq.task, 0)
        seen[mcq.task] = number + 1
        out.append(_Planned(mcq, number, by_key, ctx.langs))
    return out


def _chain(ctx: "ConvertContext", p: _Planned):
    """The checked English chain of ``p`` (``Checked``) and its reasoning text."""
    got = checked(ctx, p.name, COT_MCQ.name, gold=p.gold)
    return got, (parse_reply(got.parsed["reasoning"])[0] if got.ok else "")


def cot_requests(loaded: LoadedRecord, ctx: "ConvertContext") -> dict[str, ChatRequest]:
    """Round one: one CoT request per MCQ; round two: the translation of each accepted chain
    whose MCQ has a Chinese twin."""
    out: dict[str, ChatRequest] = {}
    for p in _planned(ctx):
        if p.problem:
            continue
        out[p.name] = p.request()
        if p.name in ctx.answers and p.twins:
            got, chain = _chain(ctx, p)
            if got.ok:
                out.update(translation_requests(f"{p.name}:zh", [chain]))
    return out


def cot_outputs(loaded: LoadedRecord, ctx: "ConvertContext", provenance: dict[str, Any]) -> list["Sample | Missing"]:
    """The CoT samples of the record's MCQs, and a ``Missing`` for each that cannot be made;
    ``provenance`` is what every LLM sample of ``llm_enrich`` carries (source file, model...)."""
    from datakit.converters.base import REJECTED, Missing

    rec = loaded.record
    out: list[Sample | Missing] = []
    for p in _planned(ctx):
        if p.problem:
            out += [Missing(task=TASK, lang=lang, status=REJECTED, reason=p.problem, slot=p.slot) for lang in p.langs]
            continue
        got, chain = _chain(ctx, p)
        if not got.ok:
            out += [got.missing(TASK, lang, slot=p.slot) for lang in p.langs]
            continue
        for lang in p.langs:
            source, reasoning, keys = p.mcq, chain, {"llm_cache_key": got.cache_key}
            if lang != "en":
                source = p.twins[lang]
                done = translated(ctx, f"{p.name}:zh", [chain])
                if not done.ok:
                    out.append(done.missing(TASK, lang, slot=p.slot))
                    continue
                reasoning, keys["llm_translation_cache_key"] = done.parsed[0], done.cache_key
            conversation = [{"from": "human", "value": cot_question(source, lang)},
                            {"from": "gpt", "value": render_reply(reasoning, p.gold)}]
            out.append(Sample(
                key=sample_key(rec.source, rec.record_id, p.slot, lang), source=rec.source,
                modality=source.modality, task=TASK, lang=lang, group=rec.uid, question_type="mcq",
                conversation=conversation, answer=p.gold, media=list(source.media),
                options=list(source.options or ()),
                provenance={**provenance, "template": f"{COT_MCQ.name}@{COT_MCQ.version}",
                            "llm_model": ctx.answers[p.name].model, **keys}))
    return out
