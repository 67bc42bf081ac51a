"""Near-duplicate text: MinHash signatures and LSH banding, vectorised over whole batches.

The signatures are datasketch's: the permutations come from ``datasketch.MinHash`` (default
``affine32`` scheme: ``a * fmix32(h) + b mod 2^32``), and ``shingle_hash32`` is the hash function
to pass as ``MinHash(hashfunc=...)`` to get the same values one shingle at a time (a test checks
this). What changes is the work per document: tokens are hashed once per distinct token (a
vocabulary), shingles are combined from token hashes with array arithmetic, and one
(shingles x permutations) array per batch is reduced with ``np.minimum.reduceat``; LSH buckets
are sorted arrays instead of dictionaries. Band and row counts are chosen as
``datasketch.MinHashLSH`` chooses them, and every candidate pair is verified on the estimated
Jaccard similarity, so a bucket collision never merges two texts.

Normalisation: NFKC, lower case, punctuation dropped. English shingles are word n-grams;
Chinese shingles are character n-grams (a run of Latin letters or digits counts as one
character, so "CT" or "3cm" stays whole).
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

import numpy as np

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORDS = re.compile(r"[^\W_]+")
_ZH_UNITS = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_WORDS_SEP = re.compile(r"[^\W_]+|\x00")
_ZH_UNITS_SEP = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+|\x00")
# Odd 64-bit multipliers combining the token hashes of one shingle, position by position.
_POSITION_KEYS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                  0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9)
_MASK64 = (1 << 64) - 1
_BATCH_TEXTS = 256  # texts per array: (permutations x ~10k shingles) stays cache-sized
_SEP = "\x00"  # text separator inside a batch (token id 0)
_ASCII_NON_WORD = str.maketrans(
    {c: " " for c in map(chr, range(128)) if not (c.isascii() and c.isalnum()) and c != _SEP}
)
MAX_RUN = 64  # a bucket larger than this links each member only to its MAX_RUN best-ranked ones
EMPTY = np.uint32(0xFFFFFFFF)


@dataclass(frozen=True, slots=True, kw_only=True)
class MinHashConfig:
    threshold: float = 0.7
    num_perm: int = 128
    ngram: int = 3
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"text threshold {self.threshold} must be in (0, 1) (Jaccard similarity)")
        if not 16 <= self.num_perm <= 1024:
            raise ValueError(f"num_perm {self.num_perm} must be in [16, 1024]")
        if not 1 <= self.ngram <= len(_POSITION_KEYS):
            raise ValueError(f"ngram {self.ngram} must be in [1, {len(_POSITION_KEYS)}]")


def tokens(text: str, lang: str) -> list[str]:
    """Normalised tokens: words for English (and any non-Chinese text), characters for Chinese."""
    norm = unicodedata.normalize("NFKC", text).lower()
    return (_ZH_UNITS if lang == "zh" else _WORDS).findall(norm)


def token_hash64(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")


def shingle_hash32(shingle: Sequence[str]) -> int:
    """The 32-bit hash of one shingle (a tuple of tokens), usable as datasketch's ``hashfunc``."""
    acc = 0
    for key, tok in zip(_POSITION_KEYS, shingle):
        acc = (acc + token_hash64(tok) * key) & _MASK64
    return acc >> 32


def shingles(toks: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """Token n-grams; a text shorter than ``n`` tokens is one shingle of all of them."""
    if len(toks) < n:
        return [tuple(toks)] if toks else []
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@functools.cache
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising false positive + false negative probability mass, equally
    weighted: the choice ``datasketch.MinHashLSH`` makes."""
    from scipy.integrate import quad

    best, best_err = (0, 0), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = quad(lambda s: 1 - (1 - s**r) ** b, 0.0, threshold)[0]
            fn = quad(lambda s: (1 - s**r) ** b, threshold, 1.0)[0]
            if 0.5 * fp + 0.5 * fn < best_err:
                best, best_err = (b, r), 0.5 * fp + 0.5 * fn
    return best


class _Vocabulary(dict):
    """token -> dense id, assigned on first sight; ``hashes[id]`` is the token's 64-bit hash.
    Natural text repeats its words a lot, so each distinct token is hashed once."""

    def __init__(self) -> None:
        super().__init__({_SEP: 0})
        self.hashes = np.zeros(1, dtype=np.uint64)
        self._new: list[str] = []

    def __missing__(self, token: str) -> int:
        i = self[token] = len(self)
        self._new.append(token)
        return i

    def sync(self) -> None:
        if self._new:
            fresh = np.array([token_hash64(t) for t in self._new], dtype=np.uint64)
            self.hashes = np.concatenate([self.hashes, fresh])
            self._new = []


class MinHasher:
    """Batch MinHash signatures, identical to datasketch's for the same shingles."""

    def __init__(self, cfg: MinHashConfig) -> None:
        from datasketch import MinHash

        self.cfg = cfg
        a, b = MinHash(num_perm=cfg.num_perm, seed=cfg.seed).permutations
        self._a = np.asarray(a, dtype=np.uint32)[:, None]
        self._b = np.asarray(b, dtype=np.uint32)[:, None]
        self._keys = np.array(_POSITION_KEYS[: cfg.ngram], dtype=np.uint64)
        self._vocab = _Vocabulary()

    def _token_hashes(self, texts: Sequence[str], lang: str) -> tuple[np.ndarray, np.ndarray]:
        """Token hashes of a batch, concatenated, and each text's token count. The batch is
        normalised and tokenised as one string, texts separated by a NUL token."""
        joined = f" {_SEP} ".join(t.replace(_SEP, " ") for t in texts) + f" {_SEP}"
        joined = unicodedata.normalize("NFKC", joined).lower()
        if lang != "zh" and joined.isascii():
            toks = joined.translate(_ASCII_NON_WORD).split()  # same tokens as _WORDS, 3x faster
        else:
            toks = (_ZH_UNITS_SEP if lang == "zh" else _WORDS_SEP).findall(joined)
        ids = np.fromiter(map(self._vocab.__getitem__, toks), dtype=np.int64, count=len(toks))
        self._vocab.sync()
        ends = np.flatnonzero(ids == 0)
        lengths = np.diff(ends, prepend=-1) - 1
        keep = np.ones(len(ids), dtype=bool)
        keep[ends] = False
        return self._vocab.hashes[ids[keep]], lengths

    def _shingle_hashes(self, h: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """32-bit shingle hashes of a batch, and each text's shingle count."""
        n = self.cfg.ngram
        starts = np.cumsum(lengths) - lengths
        counts = np.where(lengths >= n, lengths - n + 1, (lengths > 0).astype(np.int64))
        doc = np.repeat(np.arange(len(lengths)), counts)
        pos = starts[doc] + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        acc = np.zeros(len(pos), dtype=np.uint64)
        width = np.minimum(lengths[doc], n)  # short texts: one shingle of all their tokens
        for o in range(n):
            take = o < width
            acc[take] += h[pos[take] + o] * self._keys[o]
        return (acc >> np.uint64(32)).astype(np.uint32), counts

    def _batch(self, texts: Sequence[str], lang: str) -> tuple[np.ndarray, np.ndarray]:
        h, lengths = self._token_hashes(texts, lang)
        sh, counts = self._shingle_hashes(h, lengths)
        has = counts > 0
        if not has.any():
            return np.zeros((self.cfg.num_perm, 0), dtype=np.uint32), has
        # (permutations, shingles): reduceat along the contiguous axis is several times faster.
        permuted = self._a * _fmix32(sh)[None, :]
        permuted += self._b
        return np.minimum.reduceat(permuted, (np.cumsum(counts) - counts)[has], axis=1), has

    def signatures(self, texts: Sequence[str], langs: Sequence[str]) -> np.ndarray:
        """(len(texts), num_perm) uint32; a text without tokens gets a row of ``EMPTY``."""
        out = np.full((len(texts), self.cfg.num_perm), EMPTY, dtype=np.uint32)
        lang_arr = np.asarray(langs)
        for lang in sorted(set(langs)):
            rows = np.flatnonzero(lang_arr == lang)
            for lo in range(0, len(rows), _BATCH_TEXTS):
                idx = rows[lo : lo + _BATCH_TEXTS]
                mins, has = self._batch([texts[k] for k in idx], lang)
                out[idx[has]] = mins.T
        return out


def _run_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of rows sharing a key; long runs capped at ``MAX_RUN`` partners."""
    order = np.argsort(keys, kind="stable")  # equal keys stay in row (= rank) order
    k = keys[order]
    new_run = np.concatenate([[True], k[1:] != k[:-1]])
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.append(run_start, len(k)))
    pos = np.arange(len(k))
    first = run_start[run_id]
    # Row at position p pairs with the earlier positions of its run (at most MAX_RUN of them).
    n_partners = np.minimum(pos - first, MAX_RUN)
    n_partners[run_len[run_id] < 2] = 0
    total = int(n_partners.sum())
    if not total:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    later = np.repeat(pos, n_partners)
    earlier = np.repeat(first, n_partners) + (np.arange(total) - np.repeat(np.cumsum(n_partners) - n_partners, n_partners))
    return order[earlier], order[later]


def near_duplicate_pairs(sig: np.ndarray, cfg: MinHashConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) of rows whose estimated Jaccard similarity is at least the threshold, with
    that estimate; rows of ``EMPTY`` never pair."""
    bands, rows = lsh_params(cfg.threshold, cfg.num_perm)
    valid = np.flatnonzero((sig != EMPTY).any(axis=1))
    s = sig[valid]
    if len(s) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    mult = (np.arange(rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    codes = []
    for band in range(bands):
        block = s[:, band * rows : (band + 1) * rows].astype(np.uint64)
        key = (block * mult[None, :]).sum(axis=1, dtype=np.uint64)
        i, j = _run_pairs(key)
        codes.append(np.minimum(i, j) * len(s) + np.maximum(i, j))
    code = np.unique(np.concatenate(codes))
    i, j = code // len(s), code % len(s)
    sim = np.empty(len(i), dtype=np.float64)
    for lo in range(0, len(i), 1 << 16):
        a, b = i[lo : lo + (1 << 16)], j[lo : lo + (1 << 16)]
        sim[lo : lo + len(a)] = (s[a] == s[b]).mean(axis=1)
    ok = sim >= cfg.threshold
    return valid[i[ok]], valid[j[ok]], sim[ok]
