"""Batch MinHash: same signatures and LSH parameters as datasketch, planted paraphrases found."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from datakit.dedup.text_minhash import (EMPTY, MinHashConfig, MinHasher, lsh_params, near_duplicate_pairs,
                                        shingle_hash32, shingles, tokens)

TEXTS = [
    ("Where is the lesion? The hypoechoic mass lies in the upper-left region, near the pleura (3 cm).", "en"),
    ("CT显示左肺上叶结节，大小约3cm，边界清楚。", "zh"),
    ("Fièvre, œdème et µ-opioïdes: naïve café.", "en"),
    ("Two words", "en"),
    ("", "en"),
    ("!!! ...", "zh"),
]

_VOCAB = [f"{a}{b}" for a in ("ra", "mo", "ti", "ne", "ka", "lu", "pe", "so") for b in ("x", "lin", "dor", "mek", "sa", "tu")]


def sentence(rng: np.random.Generator, n: int) -> list[str]:
    return [str(w) for w in rng.choice(_VOCAB, n)]


def test_tokens_normalise_case_punctuation_width_and_script() -> None:
    assert tokens("The  LESION, (left)—3cm!", "en") == ["the", "lesion", "left", "3cm"]
    assert tokens("ＣＴ示：结节", "zh") == ["ct", "示", "结", "节"]  # NFKC folds full-width letters
    assert shingles(["a", "b"], 3) == [("a", "b")] and shingles([], 3) == []


def test_signatures_equal_datasketch() -> None:
    cfg = MinHashConfig()
    sig = MinHasher(cfg).signatures([t for t, _ in TEXTS], [l for _, l in TEXTS])
    for (text, lang), row in zip(TEXTS, sig):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=shingle_hash32)
        for sh in shingles(tokens(text, lang), cfg.ngram):
            m.update(sh)
        if tokens(text, lang):
            assert np.array_equal(m.hashvalues.astype(np.uint32), row), text
        else:
            assert (row == EMPTY).all()


def test_signature_of_a_text_does_not_depend_on_its_batch() -> None:
    cfg = MinHashConfig()
    text = "plain ascii words, five of them"
    alone = MinHasher(cfg).signatures([text], ["en"])[0]
    mixed = MinHasher(cfg).signatures(["naïve café here", text, "结节"], ["en", "en", "zh"])[1]
    assert np.array_equal(alone, mixed), "the ASCII fast path must give the same tokens as the regex"


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.85])
def test_lsh_params_equal_datasketch(threshold: float) -> None:
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    assert lsh_params(threshold, 128) == (lsh.b, lsh.r)


def planted_corpus(seed: int) -> tuple[list[str], list[str], list[tuple[int, int]], list[tuple[int, int]]]:
    """300 distinct texts, then paraphrases above the threshold and rewrites below it."""
    rng = np.random.default_rng(seed)
    base = [sentence(rng, int(rng.integers(30, 50))) for _ in range(300)]
    texts = [" ".join(w) for w in base]
    langs = ["en"] * len(texts)
    above, below = [], []
    for k in range(0, 60):
        w = list(base[k])
        if k % 3 == 0:
            para = " ".join(w).upper().replace(" ", " , ")  # case and punctuation only
        elif k % 3 == 1:
            w[len(w) // 2] = "zzword"  # one word substituted: Jaccard ~0.8
            para = " ".join(w)
        else:
            para = " ".join(w[:-1]) + "."  # last word dropped
        texts.append(para)
        langs.append("en")
        above.append((k, len(texts) - 1))
    for k in range(60, 80):
        w = list(base[k])
        texts.append(" ".join(w[: len(w) // 2] + sentence(rng, len(w) // 2)))  # half rewritten: Jaccard < 0.4
        langs.append("en")
        below.append((k, len(texts) - 1))
    zh_rng = np.random.default_rng(seed + 1)
    chars = list("肺结节肝脏肾脏病灶边界清楚低回声高密度影左右上下叶段大小约厘米未见异常增强扫描")
    for k in range(20):
        z = [str(c) for c in zh_rng.choice(chars, 60)]
        texts.append("".join(z))
        langs.append("zh")
        z[30] = "囊"
        texts.append("".join(z))
        langs.append("zh")
        above.append((len(texts) - 2, len(texts) - 1))
    return texts, langs, above, below


def test_planted_paraphrases_found_and_rewrites_not() -> None:
    cfg = MinHashConfig()
    texts, langs, above, below = planted_corpus(0)
    sig = MinHasher(cfg).signatures(texts, langs)
    i, j, sim = near_duplicate_pairs(sig, cfg)
    found = set(zip(i.tolist(), j.tolist()))
    assert set(above) <= found, f"missed {sorted(set(above) - found)}"
    assert not set(below) & found
    assert found == set(above), f"unexpected pairs {sorted(found - set(above))[:5]}"
    assert (sim >= cfg.threshold).all()


def test_same_pairs_as_datasketch_lsh_then_jaccard() -> None:
    """The batch path finds exactly the pairs a datasketch MinHashLSH query loop would, once its
    candidates are checked on the estimated Jaccard similarity."""
    cfg = MinHashConfig()
    texts, langs, _, _ = planted_corpus(1)
    sig = MinHasher(cfg).signatures(texts, langs)
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    want = set()
    for k, row in enumerate(sig):
        m = MinHash(num_perm=cfg.num_perm, hashvalues=row.astype(np.uint64), scheme="affine32")
        for other in lsh.query(m):
            if (sig[int(other)] == row).mean() >= cfg.threshold:
                want.add((int(other), k))
        lsh.insert(str(k), m)
    i, j, _ = near_duplicate_pairs(sig, cfg)
    assert set(zip(i.tolist(), j.tolist())) == want
