"""Prompts as MedEvalKit builds them (``utils/question_formats.py``, non-reasoning mode), and the
image placement its InternVL wrapper uses (``models/InternVL/InternVL_hf.py``).

Which instruction a VQA question gets follows each MedEvalKit benchmark class: VQA-RAD and
PathVQA choose by the answer (yes/no -> "Please output 'yes' or 'no'", else "Please answer the
question concisely"); SLAKE by the released ``answer_type`` (CLOSED -> "Answer the question
using a single word or phrase", OPEN -> concise), in the question's language. Multiple choice
lists the options one a line (OmniMedVQA "A. text"; PMC-VQA its released option strings) and
asks for the letter. Reports use MedEvalKit's report prompt; video summaries (no MedEvalKit
counterpart) a prompt of ours.

Image placement: one image -> ``"\\n<image>\\n" + prompt`` (InternVL's ``chat`` adds the system
turn); several images of a study -> ``"<image_1>: <image>\\n<image_2>: <image>\\n\\n" + prompt``;
volume slices and video frames -> one ``"<image>\\n"`` per slice or frame, then the prompt, as
the Fleming-VL demo feeds them (without its reasoning preamble).
"""

from __future__ import annotations

from datakit.benchmarks.items import LETTERS, BenchItem

IMAGE = "<image>"

_MCQ = {
    "en": ("\nQuestion: {question}\nOptions: \n{options}", "Answer with the option's letter from the given choices directly."),
    "zh": ("\n问题： {question}\n选项： \n{options}", "请直接使用给定选项中的选项字母来回答该问题。"),
}
_YES_NO = {"en": "Please output 'yes' or 'no'(no extra output).", "zh": "请输出'是'或'否'(不要有任何其它输出)。"}
_CLOSED = {"en": "Answer the question using a single word or phrase.", "zh": "请用一个单词或者短语回答该问题。"}
_OPEN = {"en": "Please answer the question concisely.", "zh": "请简要回答该问题。"}
REPORT = ("You are a helpful assistant. Please generate a report for the given images, including both findings "
          "and impressions. Return the report in the following format: Findings: {} Impression: {}.")
SUMMARY = {"en": "Please summarize the content of this medical video in a few sentences.",
           "zh": "请用几句话概括这段医学视频的内容。"}


def instruction(item: BenchItem) -> str:
    """The text prompt, before images are placed."""
    lang = item.lang
    if item.task == "mcq":
        lines = item.extra.get("option_lines") or tuple(f"{LETTERS[i]}. {o}" for i, o in enumerate(item.options))
        head, ask = _MCQ[lang]
        return head.format(question=item.question, options="\n".join(str(x) for x in lines)) + "\n" + ask
    if item.task == "report":
        return REPORT
    if item.task == "summary":
        return SUMMARY[lang]
    if item.benchmark == "slake":
        tail = _CLOSED[lang] if item.answer_type == "closed" else _OPEN[lang]
    else:
        tail = _YES_NO[lang] if item.answer.strip().lower() in ("yes", "no") else _OPEN[lang]
    return f"{item.question}\n{tail}"


def place_images(item: BenchItem, text: str, n_images: int) -> str:
    """The user turn: ``text`` with one ``<image>`` per image, placed as described above."""
    if n_images == 0:
        return "\n" + text
    if item.media_kind in ("volume", "video"):
        return f"{IMAGE}\n" * n_images + text
    if n_images == 1:
        return f"\n{IMAGE}\n{text}"
    return "".join(f"<image_{i + 1}>: {IMAGE}\n" for i in range(n_images)) + "\n" + text


def build_prompt(item: BenchItem, n_images: int) -> str:
    return place_images(item, instruction(item), n_images)
