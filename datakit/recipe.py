"""Recipes: YAML files that select sources, converters, tasks, languages, split and seed.

A recipe may instead *derive* its samples from another recipe's build: ``grpo_prep: {from:
stage3, ...}`` (no ``sources``) draws the GRPO set from that build (``datakit.grpo_build``).

Validated once, when loaded: every error names the file and the key (``sources[0].convert[1].
tasks[2]``) and says what is allowed, before any work starts. Validation never rewrites fields.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datakit.errors import RecipeError
from datakit.sample import LANGS

RECIPES_DIR = Path(__file__).parent / "recipes"

_TOP_KEYS = {"name", "description", "seed", "val_fraction", "samples_per_shard", "langs", "sources", "dedup",
             "multi_turn", "balance", "grpo_prep"}
_GRPO_KEYS = {"from", "target_size", "yes_no_share", "samples_per_shard"}
_SOURCE_KEYS = {"source", "path", "options", "convert"}
_CONVERT_KEYS = {"converter", "tasks", "options"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvertStep:
    converter: str
    tasks: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSpec:
    source: str
    path: str  # relative to the --sources folder
    options: dict[str, Any]
    convert: tuple[ConvertStep, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    name: str
    description: str
    seed: int
    val_fraction: float
    samples_per_shard: int
    langs: tuple[str, ...]
    sources: tuple[SourceSpec, ...]
    dedup: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    # A record's template QA of one language as one conversation (false: one sample per QA).
    multi_turn: bool = True
    balance: dict[str, Any] = field(default_factory=dict)  # datakit.balance caps
    #: ``{"from": recipe, "target_size": n, ...}``: a GRPO set drawn from that recipe's build.
    grpo_prep: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe, saved beside every build."""
        if self.grpo_prep is not None:
            return {"name": self.name, "description": self.description, "seed": self.seed,
                    "grpo_prep": dict(self.grpo_prep)}
        return {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "samples_per_shard": self.samples_per_shard,
            "langs": list(self.langs),
            "dedup": self.dedup,
            "multi_turn": self.multi_turn,
            "balance": self.balance,
            "sources": [
                {
                    "source": s.source,
                    "path": s.path,
                    "options": s.options,
                    "convert": [
                        {"converter": c.converter, "tasks": list(c.tasks), "options": c.options}
                        for c in s.convert
                    ],
                }
                for s in self.sources
            ],
        }


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A packaged recipe by name (``ultrasound``), or a file when given as a path: with a folder
    part (``./x.yaml``, ``recipes/x``) or a ``.yaml``/``.yml`` suffix. A file or folder in the
    current folder that happens to share a recipe's name never shadows the packaged recipe."""
    text = str(name_or_path)
    p = Path(text)
    if isinstance(name_or_path, Path) or "/" in text or os.sep in text or p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise RecipeError(f"{p}: no such recipe file")
        return p
    candidate = RECIPES_DIR / f"{text}.yaml"
    if not candidate.exists():
        raise RecipeError(f"unknown recipe {text!r}; known: {', '.join(list_recipes())} "
                          f"(a recipe file is given as a path, e.g. ./{text}.yaml)")
    return candidate


def load_recipe(name_or_path: str | Path) -> Recipe:
    path = resolve_recipe_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecipeError(f"{path}: cannot read recipe ({e.strerror})") from e
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: malformed YAML: {e}") from e
    return parse_recipe(raw, path)


def parse_recipe(raw: Any, path: Path) -> Recipe:
    from datakit import registry

    def fail(key: str, msg: str) -> RecipeError:
        return RecipeError(f"{path}: {key}: {msg}")

    if not isinstance(raw, dict):
        raise fail("<top>", f"expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown key; allowed: {sorted(_TOP_KEYS)}")
    derived = "grpo_prep" in raw
    for key in ("name", "seed") if derived else ("name", "seed", "sources"):
        if key not in raw:
            raise fail(key, "required key is missing")
    name = raw["name"]
    if not isinstance(name, str) or not name.isidentifier():
        raise fail("name", f"must be an identifier-like string, got {name!r}")
    seed = raw["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise fail("seed", f"must be a non-negative integer, got {seed!r}")
    val_fraction = raw.get("val_fraction", 0.1)
    if not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise fail("val_fraction", f"must be a number in [0, 1), got {val_fraction!r}")
    per_shard = raw.get("samples_per_shard", 1000)
    if not isinstance(per_shard, int) or per_shard < 1:
        raise fail("samples_per_shard", f"must be a positive integer, got {per_shard!r}")
    langs = raw.get("langs", ["en", "zh"])
    if not isinstance(langs, list) or not langs or any(l not in LANGS for l in langs):
        raise fail("langs", f"must be a non-empty list drawn from {sorted(LANGS)}, got {langs!r}")
    dedup = raw.get("dedup", {}) or {}
    if not isinstance(dedup, dict):
        raise fail("dedup", "must be a mapping")
    if derived:
        return _derived_recipe(raw, path, name, seed, fail)
    from datakit.dedup.config import DedupConfig

    try:
        DedupConfig.from_recipe(dedup)
    except (RecipeError, ValueError, TypeError) as e:
        raise RecipeError(f"{path}: {e}") from e

    multi_turn = raw.get("multi_turn", True)
    if not isinstance(multi_turn, bool):
        raise fail("multi_turn", f"must be true or false, got {multi_turn!r}")
    balance = raw.get("balance", {}) or {}
    from datakit.balance import BalanceConfig

    try:
        BalanceConfig.from_recipe(balance)
    except (RecipeError, ValueError, TypeError) as e:
        raise RecipeError(f"{path}: {e}") from e

    srcs = raw["sources"]
    if not isinstance(srcs, list) or not srcs:
        raise fail("sources", "must be a non-empty list")
    known_sources = registry.sources()
    known_converters = registry.converters()
    specs = []
    for i, s in enumerate(srcs):
        where = f"sources[{i}]"
        if not isinstance(s, dict):
            raise fail(where, "must be a mapping")
        bad = set(s) - _SOURCE_KEYS
        if bad:
            raise fail(f"{where}.{sorted(bad)[0]}", f"unknown key; allowed: {sorted(_SOURCE_KEYS)}")
        src = s.get("source")
        if src not in known_sources:
            raise fail(f"{where}.source", f"unknown source {src!r}; known: {', '.join(known_sources)}")
        reader = known_sources[src]
        options = s.get("options", {}) or {}
        if not isinstance(options, dict):
            raise fail(f"{where}.options", "must be a mapping")
        bad_opts = set(options) - set(reader.known_options())
        if bad_opts:
            raise fail(
                f"{where}.options.{sorted(bad_opts)[0]}",
                f"unknown option for {src}; known: {sorted(reader.known_options())}",
            )
        try:
            reader.check_options(options)
        except ValueError as e:
            raise fail(f"{where}.options", str(e)) from e
        steps = s.get("convert")
        if not isinstance(steps, list) or not steps:
            raise fail(f"{where}.convert", "must be a non-empty list of converter steps")
        conv = []
        for j, c in enumerate(steps):
            cw = f"{where}.convert[{j}]"
            if not isinstance(c, dict):
                raise fail(cw, "must be a mapping")
            bad = set(c) - _CONVERT_KEYS
            if bad:
                raise fail(f"{cw}.{sorted(bad)[0]}", f"unknown key; allowed: {sorted(_CONVERT_KEYS)}")
            cname = c.get("converter")
            if cname not in known_converters:
                raise fail(f"{cw}.converter", f"unknown converter {cname!r}; known: {', '.join(known_converters)}")
            spec = known_converters[cname]
            tasks = c.get("tasks", list(spec.tasks))
            if not isinstance(tasks, list) or not tasks:
                raise fail(f"{cw}.tasks", "must be a non-empty list")
            for k, t in enumerate(tasks):
                if t not in spec.tasks:
                    raise fail(f"{cw}.tasks[{k}]", f"unknown task {t!r} for {cname}; known: {', '.join(spec.tasks)}")
            copts = c.get("options", {}) or {}
            if not isinstance(copts, dict):
                raise fail(f"{cw}.options", "must be a mapping")
            conv.append(ConvertStep(converter=cname, tasks=tuple(tasks), options=copts))
        rel = s.get("path", reader.top_folder)
        if not isinstance(rel, str) or not rel:
            raise fail(f"{where}.path", "must be a non-empty relative path")
        specs.append(SourceSpec(source=src, path=rel, options=options, convert=tuple(conv)))

    return Recipe(
        name=name,
        description=str(raw.get("description", "")),
        seed=seed,
        val_fraction=float(val_fraction),
        samples_per_shard=per_shard,
        langs=tuple(langs),
        sources=tuple(specs),
        dedup=dedup,
        path=path,
        multi_turn=multi_turn,
        balance=balance,
    )


def _derived_recipe(raw: dict[str, Any], path: Path, name: str, seed: int, fail: Any) -> Recipe:
    """A recipe whose samples are drawn from another recipe's build (``grpo_prep``)."""
    extra = sorted(set(raw) - {"name", "description", "seed", "grpo_prep"})
    if extra:
        raise fail(extra[0], "a grpo_prep recipe takes its samples from another recipe: only name, description, "
                             "seed and grpo_prep are allowed")
    spec = raw["grpo_prep"]
    if not isinstance(spec, dict) or "from" not in spec:
        raise fail("grpo_prep", "must be a mapping with 'from' (the recipe to draw from)")
    bad = sorted(set(spec) - _GRPO_KEYS)
    if bad:
        raise fail(f"grpo_prep.{bad[0]}", f"unknown key; allowed: {sorted(_GRPO_KEYS)}")
    base = spec["from"]
    if not isinstance(base, str) or base == name:
        raise fail("grpo_prep.from", f"must name another recipe, got {base!r}")
    try:
        base_recipe = load_recipe(base)
    except RecipeError as e:
        raise fail("grpo_prep.from", str(e)) from None
    if base_recipe.grpo_prep is not None:
        raise fail("grpo_prep.from", f"{base!r} is itself derived; draw from a recipe with sources")
    from datakit.llm.grpo_prep import GRPOConfig

    options = {k: v for k, v in spec.items() if k != "from"}
    try:
        GRPOConfig(seed=seed, **options)
    except (TypeError, ValueError) as e:
        raise fail("grpo_prep", str(e)) from None
    return Recipe(name=name, description=str(raw.get("description", "")), seed=seed, val_fraction=0.0,
                  samples_per_shard=int(options.get("samples_per_shard", 1000)), langs=base_recipe.langs,
                  sources=(), path=path, grpo_prep={"from": base, **options})
