"""Chain-of-thought for multiple-choice samples (LLM task ``cot_mcq`` of ``llm_enrich``).

The paper adds CoT data "to address the shortcut learning problem prevalent in multiple-choice
medical questions". For every English multiple-choice sample a record's template converters made
(``facts["template_samples"]``, set by the build before the LLM steps), the LLM gets the images,
the question, the options and the verified letter, and writes a reasoning chain that must end
with ``Answer: <letter>``. Validation (``validate.check_cot``) rejects a chain that ends on no
letter (``cot_no_final_letter``) or on another one (``cot_wrong_letter``); every request and its
verdict are cached like the other tasks. The sample it gives is the MCQ's question with the CoT
instruction and the reply in the shared form of ``datakit.cot`` (``<think>…</think><answer>X</answer>``).

Chinese: when the MCQ has a Chinese twin (same key with ``zh``), the chain is translated by
``translate_zh`` and validated again; the Chinese CoT sample takes the twin's question. Offline,
every planned CoT sample of a record is a ``skipped_llm`` row (the build's offline path).
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from datakit.cot import COT_INSTRUCTION, LETTERS, parse_reply, render_reply, split_options
from datakit.llm.request import ImagePart
from datakit.llm.tasks import COT_MCQ, cot_request, translation_request
from datakit.record import LoadedRecord
from datakit.sample import IMAGE_TOKEN, Sample, sample_key

if TYPE_CHECKING:
    from datakit.converters.base import ConvertContext
    from datakit.llm.synthesis import LLMSynthesizer, SynthesisOutcome

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


def cot_samples(synth: "LLMSynthesizer", loaded: LoadedRecord, ctx: "ConvertContext", out: "SynthesisOutcome") -> None:
    """Ask for, validate and add the CoT samples of one record's MCQs (drops go to ``out``)."""
    from datakit.llm.synthesis import REJECTED, _Asked

    rec = loaded.record
    made = list(loaded.facts.get("template_samples") or ())
    by_key = {s.key: s for s in made}
    mcqs = sorted((s for s in made if s.question_type == "mcq" and s.lang == "en" and s.options), key=lambda s: s.key)
    seen: dict[str, int] = {}
    for mcq in mcqs:
        number = seen.get(mcq.task, 0)
        seen[mcq.task] = number + 1
        label = f"cot_{mcq.task}" + (f"_{number + 1}" if number else "")
        langs = [lang for lang in ctx.langs if lang == "en" or twin_key(mcq.key, lang) in by_key]
        gold = mcq.answer.strip()
        images = [m for m in mcq.media if m.ext in ("png", "jpg")]
        problem = ""
        if gold not in LETTERS[: len(mcq.options or ())]:
            problem = "mcq_answer_not_a_letter"
        elif not images or len(images) > MAX_IMAGES:
            problem = "too_many_images" if images else "missing_image"
        if problem:
            out.drops.extend(synth._drop(loaded, label, lang, _Asked("", status=REJECTED, reason=problem))
                             for lang in langs)
            continue
        text = mcq.conversation[0]["value"].replace(IMAGE_TOKEN, "").strip()
        parsed = split_options(text)
        request = cot_request([ImagePart.from_ext(m.data, m.ext) for m in images],
                              question=parsed[0] if parsed else text, options=list(mcq.options or ()), answer=gold)
        asked = synth._ask(request, gold=gold)
        if asked.parsed is None:
            out.drops.extend(synth._drop(loaded, label, lang, asked) for lang in langs)
            continue
        chain = parse_reply(asked.parsed["reasoning"])[0]  # validated: it ends with the gold letter
        for lang in langs:
            source, reasoning, translation_key = mcq, chain, None
            if lang != "en":
                source = by_key[twin_key(mcq.key, lang)]
                done = synth._ask(translation_request([chain]), sources=[chain])
                if done.parsed is None:
                    out.drops.append(synth._drop(loaded, label, lang, done))
                    continue
                reasoning, translation_key = done.parsed["translations"][0], done.key
            conversation = [{"from": "human", "value": cot_question(source, lang)},
                            {"from": "gpt", "value": render_reply(reasoning, gold)}]
            sample = synth._sample(loaded, COT_MCQ, TASK, lang, "mcq", conversation, gold, list(source.media),
                                   list(source.options or ()), asked.key, translation_key)
            out.samples.append(dataclasses.replace(sample, key=sample_key(rec.source, rec.record_id, label, lang)))
