"""The `modality` converter: every modality listed in one fixed order, the record's own modality
as the answer (EN and ZH twins share the letter), the open reply the name alone, and no question
for a record of several images."""

from __future__ import annotations

import dataclasses

import pytest

from datakit.converters.base import ConvertContext
from datakit.converters.modality import modality, modality_options
from datakit.converters.templates import vocabulary
from datakit.record import RawRecord
from datakit.registry import get_source

CTX = ConvertContext(seed=7, tasks=("modality_mcq", "modality_open"), langs=("en", "zh"))


def _first_loaded(name: str, sample_sources):
    cls = get_source(name)
    reader = cls(sample_sources / cls.top_folder)
    record = next(r for r in reader.discover() if isinstance(r, RawRecord))
    return reader.load(record)


@pytest.mark.parametrize("source, expected", [("brain_tumor_mri", "MRI"), ("eyepacs", "fundus photography"),
                                              ("busi", "ultrasound"), ("pad_ufes_20", "clinical photograph")])
def test_answer_is_the_record_modality_among_every_option(source, expected, sample_sources):
    samples = {(s.task, s.lang): s for s in modality(_first_loaded(source, sample_sources), CTX)}
    assert set(samples) == {(t, lang) for t in CTX.tasks for lang in CTX.langs}
    en, zh = samples[("modality_mcq", "en")], samples[("modality_mcq", "zh")]
    assert en.options == modality_options("en") and zh.options == modality_options("zh")
    assert len(en.options) == len(vocabulary().keys("modality_names")) >= 7
    assert en.options[ord(en.answer) - ord("A")] == expected
    assert zh.answer == en.answer  # twins share the letter
    assert en.conversation[1]["value"] == f"{en.answer}. {expected}"
    question = en.conversation[0]["value"]
    assert question.startswith("<image>\n") and f"\n{en.answer}. {expected}\n" in question
    assert samples[("modality_open", "en")].conversation[1]["value"] == expected
    assert samples[("modality_open", "zh")].answer == zh.options[ord(zh.answer) - ord("A")]


def test_no_question_for_several_images(sample_sources):
    loaded = _first_loaded("busi", sample_sources)
    assert modality(dataclasses.replace(loaded, media=loaded.media * 2), CTX) == []
