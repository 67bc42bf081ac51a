"""Every multiple-choice phrasing of every template bank, in English and Chinese, asked
open-ended by GRPO prep never cites the options it no longer shows."""

from __future__ import annotations

import re

import pytest

from datakit.converters.templates import fill, template_bank, vocabulary
from datakit.llm.grpo_prep import mcq_to_open
from datakit.llm.mcq_stem import cites_options, open_stem

# (template bank, multiple-choice tasks); the M3D-VQA lead-ins wrap released questions.
MCQ_POOLS = [("labels", ("diagnosis_mcq",)), ("metadata", ("history_diagnosis_mcq",)),
             ("volume", ("plane_mcq", "label_mcq", "vqa_mcq"))]
M3D_QUESTIONS = {"en": ["Which organ shows an abnormality?", "Which of the following organs is enlarged?"],
                 "zh": ["哪个器官有异常？", "下列哪个器官增大？"]}
# Stricter than the module's own guard: any word of choosing among given answers.
FORBIDDEN = {"en": re.compile(r"option|choice|following|below|choose|select|pick|letter|correct answer", re.I),
             "zh": re.compile(r"选项|以下|下列|选择|字母|正确答案|哪一项")}


def _phrasings():
    for bank_name, tasks in MCQ_POOLS:
        bank = template_bank(bank_name)
        for task in tasks:
            for lang in ("en", "zh"):
                for i, text in enumerate(bank.pool(task, "question", lang)):
                    yield pytest.param(bank_name, task, lang, text, id=f"{task}-{lang}-{i}")


def _words(lang: str) -> dict[str, str]:
    vocab = vocabulary()
    return {"modality": vocab.term("modalities", "ultrasound", lang), "body_part": vocab.term("body_parts", "breast", lang),
            "imaging": vocab.term("modalities", "ct", lang)}


@pytest.mark.parametrize("bank_name, task, lang, text", list(_phrasings()))
def test_every_mcq_phrasing_rewrites_without_citing_options(bank_name, task, lang, text):
    history = "Patient history: 60 years old; the lesion is raised." if lang == "en" else "患者病史：60岁；病变隆起。"
    questions = M3D_QUESTIONS[lang] if "{question}" in text else [""]
    for q in questions:
        stem = fill(text, {**_words(lang), "question": q} if q else _words(lang))
        if bank_name == "metadata":
            stem = f"{history}\n{stem}"
        options = ["benign lesion", "malignant lesion", "normal tissue"]
        instruction = vocabulary().phrase("mcq_instruction", lang)
        human = "\n".join(["<image>", stem, *(f"{l}. {o}" for l, o in zip("ABC", options)), instruction])
        d = {"lang": lang, "turns": [{"question_type": "mcq", "options": options, "answer": "B"}], "provenance": {},
             "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": "B. malignant lesion"}]}
        out = mcq_to_open(d)
        assert isinstance(out, dict), (text, out)
        asked = out["conversations"][0]["value"]
        assert not FORBIDDEN[lang].search(asked), asked
        assert out["turns"][0]["answer"] == "malignant lesion" and not any(o in asked for o in options)
        assert asked.startswith("<image>\n") and len(asked) > len("<image>\n") + 4


def test_the_guard_drops_what_no_rule_rewrites():
    d = {"lang": "en", "turns": [{"options": ["a", "b"], "answer": "A", "question_type": "mcq"}], "provenance": {},
         "conversations": [{"from": "human", "value": "<image>\nConsidering options A and B, which fits?\nA. a\nB. b"},
                           {"from": "gpt", "value": "A"}]}
    assert mcq_to_open(d) == "mcq_stem_cites_options"
    assert cites_options("以下哪个正确") and cites_options("Pick the right answer") and not cites_options("the history above")


def test_rewrites_keep_what_is_asked():
    assert open_stem("Looking at this knee X-ray scan, which of the options below is correct?") == \
        "Looking at this knee X-ray scan, what does it show?"
    assert open_stem("Choose the option that best matches what this breast ultrasound image shows.") == \
        "What does this breast ultrasound image show?"
    assert open_stem("Examine this CT scan and choose the correct answer. Which organ is enlarged?") == \
        "Examine this CT scan. Which organ is enlarged?"
    assert open_stem("请为这张图像选择正确的诊断。") == "这张图像的正确诊断是什么？"
    assert open_stem("观察这张膝关节X线图像，以下哪个选项是正确的？") == "观察这张膝关节X线图像，显示的是什么？"
