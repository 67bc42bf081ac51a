"""The ``dedup:`` section of a recipe, validated once, with the key named in every error.

```yaml
dedup:
  exact_image: true                  # decoded-pixel sha256
  near_image: {coarse: 8, fine: 16}  # Hamming thresholds (64-bit search / 144-bit verify), or false
  near_text:                         # MinHash LSH on question + answer, or false
    threshold: 0.7
    num_perm: 128
    ngram: 3
    question_types: [caption, report, summary]
  decontam: all                      # registered benchmarks to check: all, none, or a list of names
```

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
from datakit.sample import INTERLEAVED, QUESTION_TYPES

FREE_TEXT_TYPES = ("caption", "report", "summary")


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

    @classmethod
    def from_recipe(cls, raw: Mapping[str, Any] | None) -> "DedupConfig":
        raw = dict(raw or {})
        allowed = {"exact_image", "near_image", "near_text", "decontam"}
        for key in raw:
            if key not in allowed:
                raise RecipeError(f"dedup.{key}: unknown key; allowed: {sorted(allowed)}")
        exact = raw.get("exact_image", True)
        if not isinstance(exact, bool):
            raise RecipeError(f"dedup.exact_image: must be true or false, got {exact!r}")
        return cls(
            exact_image=exact,
            near_image=_section(raw, "near_image", {"coarse", "fine"}, lambda d: NearImageConfig(**d)),
            near_text=_section(raw, "near_text", {"threshold", "num_perm", "ngram", "seed", "question_types"}, _near_text),
            decontam=_decontam(raw.get("decontam", "all")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The resolved section, saved with the build."""
        text = self.near_text
        return {
            "exact_image": self.exact_image,
            "near_image": None if self.near_image is None else {"coarse": self.near_image.coarse, "fine": self.near_image.fine},
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
