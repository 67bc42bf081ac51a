"""Edges of answer reading (found by mutation testing): the last marker wins, an empty
response is empty, only a capital letter alone is a letter, ties and zero similarity in the
nearest option, letters beyond the options, an option's exact text before containment."""

from __future__ import annotations

import pytest

from megatron_fleming.eval.answers import Choice, extract_answer, judge_yes_no, match_choice


def test_the_text_after_the_last_marker_is_the_answer():
    assert extract_answer("Answer: A. On reflection, answer: B") == "B"
    assert extract_answer("Answer: X-ray") == "X-ray"  # only colons are stripped after a marker
    assert extract_answer("") == ""


def test_a_choice_is_a_capital_letter_or_an_options_text():
    opts = ("none", "lesion")
    assert match_choice("**B**", opts) == Choice("B", "letter")
    assert match_choice("a. lesion", opts) == Choice("B", "text")  # lowercase "a." is not option A
    assert match_choice("XA", ("XA", "XB")) == Choice("A", "text")
    assert match_choice("I choose D", ("cat", "dog"), nearest=False) == Choice(None, "none")  # no option D


def test_an_options_exact_text_wins_over_containment():
    assert match_choice("lung nodule", ("lung", "lung nodule")) == Choice("B", "text")


def test_nearest_option_ties_go_to_the_first_and_nothing_in_common_is_no_choice():
    assert match_choice("ab", ("abc", "abd")) == Choice("A", "nearest", 0.8)
    assert match_choice("xyz", ("cat", "dog")) == Choice(None, "none", 0.0)


def test_a_reference_that_is_not_yes_or_no_is_refused():
    with pytest.raises(ValueError, match=r"reference 'maybe' is not a yes/no answer"):
        judge_yes_no("maybe", "yes")
