"""The ``dedup:`` section of a recipe, validated once, with the key named in every error.

```yaml
dedup:
  exact_image: true                  # decoded-pixel sha256
  near_image:                        # or false
    coarse: 8                        # Hamming thresholds: 64-bit search, 144-bit verification
    fine: 16
    min_similarity: 0.95             # pixel check of every candidate pair (dedup/pixel_check.py)
    modalities:                      # per modality (sample.MODALITIES), each key optional
      fundus: {fine: 12, min_similarity: 0.98}
  label_conflicts: keep              # near/exact duplicates whose labels or answers differ:
                                     # keep both (reported) or drop_both
  near_text:                         # MinHash LSH on question + answer, or false
    threshold: 0.7
    num_perm: 128
    ngram: 3
    question_types: [caption, report, summary]
  decontam: all                      # registered benchmarks to check: all, none, or a list of names
```

A pair of two modalities meets the stricter thresholds of the two. Label conflicts are never
merged silently: ``keep`` keeps both images and lists the pair in the dedup report,
``drop_both`` drops both (manifest status ``label_conflict``), for a recipe that would rather
lose both than train on an unresolved grade.

``near_text`` applies only to the listed question types: template questions about labels repeat
their wording across thousands of different images by design, so text similarity there says
nothing about duplication; free text from the source (captions, reports, summaries) does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from datakit.dedup.image_index import NearImageConfig
from datakit.dedup.text_minhash import MinHashConfig
from datakit.errors import RecipeError
from datakit.sample import INTERLEAVED, MODALITIES, QUESTION_TYPES

FREE_TEXT_TYPES = ("caption", "report", "summary")
LABEL_CONFLICT_POLICIES = ("keep", "drop_both")


@dataclass(frozen=True, slots=True, kw_only=True)
class NearTextConfig:
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    question_types: tuple[str, ...] = FREE_TEXT_TYPES


@dataclass(frozen=True, slots=True, kw_only=True)
class DedupConfig:
    exact_image: bool = True
    near_image: NearImageConfig | None = field(default_factory=NearImageConfig)
    near_text: NearTextConfig | None = field(default_factory=NearTextConfig)
    decontam: tuple[str, ...] | str = "all"  # "all" = every registered benchmark
    near_image_modalities: dict[str, NearImageConfig] = field(default_factory=dict)
    label_conflicts: str = "keep"

    def near_image_for(self, modality_a: str, modality_b: str) -> NearImageConfig:
        """The thresholds of a pair: its modalities' (the stricter when they differ)."""
        base = self.near_image or NearImageConfig()
        a = self.near_image_modalities.get(modality_a, base)
        b = self.near_image_modalities.get(modality_b, base)
        return a if a == b else a.stricter(b)

    @classmethod
    def from_recipe(cls, raw: Mapping[str, Any] | None) -> "DedupConfig":
        raw = dict(raw or {})
        allowed = {"exact_image", "near_image", "near_text", "decontam", "label_conflicts"}
        for key in raw:
            if key not in allowed:
                raise RecipeError(f"dedup.{key}: unknown key; allowed: {sorted(allowed)}")
        exact = raw.get("exact_image", True)
        if not isinstance(exact, bool):
            raise RecipeError(f"dedup.exact_image: must be true or false, got {exact!r}")
        policy = raw.get("label_conflicts", "keep")
        if policy not in LABEL_CONFLICT_POLICIES:
            raise RecipeError(f"dedup.label_conflicts: must be one of {list(LABEL_CONFLICT_POLICIES)}, got {policy!r}")
        near_raw = raw.get("near_image", {})
        per_modality: Any = {}
        if isinstance(near_raw, dict):
            near_raw = dict(near_raw)
            per_modality = near_raw.pop("modalities", {})
        near = _section({"near_image": near_raw}, "near_image", {"coarse", "fine", "min_similarity"},
                        lambda d: NearImageConfig(**d))
        return cls(
            exact_image=exact,
            near_image=near,
            near_image_modalities=_modalities(per_modality, near),
            label_conflicts=policy,
            near_text=_section(raw, "near_text", {"threshold", "num_perm", "ngram", "seed", "question_types"}, _near_text),
            decontam=_decontam(raw.get("decontam", "all")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The resolved section, saved with the build."""
        text = self.near_text
        return {
            "exact_image": self.exact_image,
            "near_image": None if self.near_image is None else {
                **_thresholds(self.near_image),
                "modalities": {m: _thresholds(c) for m, c in sorted(self.near_image_modalities.items())},
            },
            "label_conflicts": self.label_conflicts,
            "near_text": None
            if text is None
            else {
                "threshold": text.minhash.threshold,
                "num_perm": text.minhash.num_perm,
                "ngram": text.minhash.ngram,
                "seed": text.minhash.seed,
                "question_types": list(text.question_types),
            },
            "decontam": self.decontam if isinstance(self.decontam, str) else list(self.decontam),
        }


def _thresholds(c: NearImageConfig) -> dict[str, Any]:
    return {"coarse": c.coarse, "fine": c.fine, "min_similarity": c.min_similarity}


def _modalities(raw: Any, base: NearImageConfig | None) -> dict[str, NearImageConfig]:
    """``near_image.modalities``: per-modality thresholds, each key defaulting to the base's."""
    if not isinstance(raw, dict):
        raise RecipeError(f"dedup.near_image.modalities: must be a mapping of modality -> thresholds, got {raw!r}")
    base = base or NearImageConfig()
    out = {}
    for modality, value in raw.items():
        where = f"dedup.near_image.modalities.{modality}"
        if modality not in MODALITIES:
            raise RecipeError(f"{where}: unknown modality; known: {sorted(MODALITIES)}")
        if not isinstance(value, dict) or set(value) - {"coarse", "fine", "min_similarity"}:
            raise RecipeError(f"{where}: must be a mapping with keys among coarse, fine, min_similarity")
        try:
            out[modality] = NearImageConfig(**{**_thresholds(base), **value})
        except (TypeError, ValueError) as e:
            raise RecipeError(f"{where}: {e}") from e
    return out


def _section(raw: Mapping[str, Any], key: str, allowed: set[str], build: Any) -> Any:
    value = raw.get(key, {})
    if value is False or value is None:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise RecipeError(f"dedup.{key}: must be a mapping or false, got {value!r}")
    for k in value:
        if k not in allowed:
            raise RecipeError(f"dedup.{key}.{k}: unknown key; allowed: {sorted(allowed)}")
    try:
        return build(value)
    except (TypeError, ValueError) as e:
        raise RecipeError(f"dedup.{key}: {e}") from e


def _near_text(d: dict[str, Any]) -> NearTextConfig:
    d = dict(d)  # never pop from the recipe's own mapping: it is validated again at build time
    types = d.pop("question_types", list(FREE_TEXT_TYPES))
    known = QUESTION_TYPES | {INTERLEAVED}  # interleaved documents are compared as whole texts
    if not isinstance(types, list) or any(t not in known for t in types):
        raise ValueError(f"question_types must be a list drawn from {sorted(known)}, got {types!r}")
    return NearTextConfig(minhash=MinHashConfig(**d), question_types=tuple(types))


def _decontam(value: Any) -> tuple[str, ...] | str:
    if value in ("all", "none"):
        return value
    if value is False or value is None:
        return "none"
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise RecipeError(f"dedup.decontam: must be 'all', 'none' or a list of benchmark names, got {value!r}")
