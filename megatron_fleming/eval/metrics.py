"""Report and summary metrics from the field's libraries: ROUGE-L (``rouge-score``) and CIDEr
(``pycocoevalcap``), both over one stated tokenisation.

**Tokenisation** (``tokenize``): NFKC, lower-cased; a token is a run of ASCII letters and digits,
or a single CJK character; everything else (punctuation, spaces) separates tokens. For English
this is ``rouge-score``'s own default tokenizer without stemming (which drops every non-ASCII
character and so would score Chinese as empty); it also stands in for pycocoevalcap's PTB
tokenizer, which needs Java and lower-cases and removes punctuation much the same way.

* ``rouge_l``: ``rouge_score.rouge_scorer.RougeScorer(["rougeL"])`` F-measure of one response
  against its reference (sentence-level LCS, not the summary-level ``rougeLsum``).
* ``cider``: ``pycocoevalcap.cider.Cider`` (n = 1..4, σ = 6: the CIDEr-D form the COCO toolkit
  ships, ×10 inside) over the whole set — document frequencies come from the set's references,
  so a corpus score is not the mean of scores computed alone.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

_TOKEN = re.compile(r"[a-z0-9]+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", text or "").lower())


class _Tokenizer:
    """The ``tokenize`` method ``rouge_score`` calls."""

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text)


def rouge_l(prediction: str, reference: str) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokenizer())
    return float(scorer.score(reference, prediction)["rougeL"].fmeasure)


def cider(predictions: Sequence[str], references: Sequence[str]) -> tuple[float, list[float]]:
    """(corpus CIDEr, per-item CIDEr) of predictions against one reference each."""
    from pycocoevalcap.cider.cider import Cider

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return 0.0, []
    res = {i: [" ".join(tokenize(p))] for i, p in enumerate(predictions)}
    gts = {i: [" ".join(tokenize(r))] for i, r in enumerate(references)}
    score, scores = Cider().compute_score(gts, res)
    return float(score), [float(s) for s in scores]
