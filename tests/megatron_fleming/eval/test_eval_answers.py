"""Answer parsing and metrics, each rule against expectations worked out by hand, EN and ZH.

Where MedEvalKit (``utils/utils.py``) decides differently, the comment says what it would do.
"""

from __future__ import annotations

import pytest

from megatron_fleming.eval.answers import (answer_polarity, exact_match, extract_answer, judge_yes_no, match_choice,
                                           normalise, parse_judge)
from megatron_fleming.eval.metrics import cider, rouge_l, tokenize

OPTIONS = ("CT", "MRI", "Ultrasound", "PET")
OPTIONS_ZH = ("左肺", "右肺", "心脏")


@pytest.mark.parametrize("response,span", [
    ("The answer is: left lung", "left lung"),
    ("<think>looks dark</think><answer>Left lung</answer>", "Left lung"),
    ("so \\boxed{\\text{B}} it is", "\\text{B}"),
    ("**Answer**: C", "C"),
    ("分析如下。答案：左肺", "左肺"),
    ("plain", "plain"),
])
def test_answer_span(response, span):
    assert extract_answer(response) == span


@pytest.mark.parametrize("reference,response,correct,read", [
    ("yes", "Yes.", True, "yes"),
    ("Yes", "yes, there is a mass", True, "yes"),
    ("no", "No", True, "no"),
    # "node" and "not" hold "no" as a substring: MedEvalKit's `'no' in response` finds both polarities.
    ("yes", "Yes, the lymph node is enlarged", True, "yes"),
    ("no", "It is not present", False, None),
    ("yes", "yes and no", False, None),  # both polarities: never correct
    ("是", "是的", True, "yes"),
    ("否", "不是", True, "no"),
    ("是", "不是", False, "no"),
    ("否", "没有", True, "no"),
])
def test_closed_yes_no(reference, response, correct, read):
    assert judge_yes_no(reference, response) == (correct, read)


@pytest.mark.parametrize("response,letter,rule", [
    ("B", "B", "letter"), ("b", "B", "letter"), ("(C)", "C", "letter"), ("D. PET", "D", "letter"),
    ("The answer is C", "C", "letter"), ("答案是D", "D", "letter"), ("选项B", "B", "letter"),
    ("mri", "B", "text"), ("It is an MRI scan.", "B", "text"),
    ("A lesion in the liver", None, "nearest"),  # a sentence, not option A
    ("Ultrasonography", "C", "nearest"),
    ("", None, "none"),  # MedEvalKit's nearest-option search returns index 0 (option A) here
])
def test_multiple_choice(response, letter, rule):
    got = match_choice(response, OPTIONS)
    assert got.rule == rule
    if letter is not None:
        assert got.letter == letter


def test_nearest_option_similarity_by_hand():
    # difflib ratio("ultrasound", "ultrasonography") = 2 * 8 ("ultrason") / (10 + 15) = 0.64
    got = match_choice("Ultrasonography", OPTIONS)
    assert got.letter == "C" and got.similarity == pytest.approx(0.64)


@pytest.mark.parametrize("response,letter,rule", [
    ("B", "B", "letter"), ("病变位于左肺", "A", "text"), ("右肺。", "B", "text"), ("心", "C", "nearest")])
def test_multiple_choice_chinese(response, letter, rule):
    got = match_choice(response, OPTIONS_ZH)
    assert (got.letter, got.rule) == (letter, rule)


@pytest.mark.parametrize("reference,response,correct", [
    ("Left Lung", "left lung.", True),  # MedEvalKit compares "left lung." with "left lung": wrong there
    ("heart", "Heart", True), ("heart", "cardiac silhouette", False), ("2", "2", True),
    ("左肺", "左肺。", True), ("左肺", "右肺", False), ("ＣＴ", "ct", True)])
def test_open_exact_match(reference, response, correct):
    assert exact_match(reference, response)[0] is correct


def test_normalise_and_polarity_edges():
    assert normalise("  **Left   Lung.** ") == "left lung"
    assert answer_polarity("") is None


@pytest.mark.parametrize("reply,verdict", [
    ("<think>same organ</think>\n<judge>0</judge>", True), ("<judge> 1 </judge>", False),
    ("<judge>0</judge> wait <judge>1</judge>", False), ("0", None), ("<judge>maybe</judge>", None), (None, None)])
def test_judge_verdict(reply, verdict):
    assert parse_judge(reply) is verdict


def test_rouge_l_by_hand():
    # LCS("the cat sat", "the cat was sat") = 3: P = 3/3, R = 3/4, F = 2PR / (P + R) = 6/7
    assert rouge_l("The cat sat.", "the cat was sat") == pytest.approx(6 / 7)
    # characters: LCS("左肺结节", "右肺结节") = 3 of 4 each side: F = 0.75
    assert rouge_l("左肺结节", "右肺结节") == pytest.approx(0.75)
    assert rouge_l("", "heart") == 0.0
    assert tokenize("Heart-size: NORMAL, 左肺。") == ["heart", "size", "normal", "左", "肺"]


@pytest.mark.parametrize("preds,refs", [(["a b", "x y"], ["a c", "x y"]), (["左肺", "心脏"], ["右肺", "心脏"])])
def test_cider_by_hand(preds, refs):
    # Two references, so idf = log 2 for every n-gram that occurs in one of them (or none).
    # Item 1: unigram vectors {a, b} vs {a, c} at equal weight: cosine 1/2; no shared bigram;
    # no 3-/4-grams: mean over n = 1..4 is 1/8, times 10 = 1.25. Item 2 is its reference: unigram
    # and bigram cosines 1, 3-/4-grams 0: 10 * 2/4 = 5. Corpus: the mean, 3.125.
    score, per_item = cider(preds, refs)
    assert per_item == pytest.approx([1.25, 5.0])
    assert score == pytest.approx(3.125)
