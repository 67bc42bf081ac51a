"""Bilingual question/answer templates and the hand-made vocabulary they are filled from.

``datakit/templates/<name>.yaml`` holds pools of phrasings, ``task -> pool -> lang -> [text]``;
every task has a ``question`` pool (at least ``MIN_QUESTIONS`` phrasings per language) and any
number of answer pools (at least ``MIN_ANSWERS``). ``vocabulary.yaml`` holds the translated
terms (labels per source, organs, regions, sizes, body parts, modalities) and fixed phrases.
Both are read and validated once per process, so a broken template fails the first sample of a
build rather than leaving a bad string in a shard.

Filling is ``str.format`` with named fields only; a missing field or a ``{...}`` left in the
output raises ``TemplateError``. A missing translation raises ``MissingTranslation``: a Chinese
sample never falls back to English words.

A template id names the phrasing used, for provenance: ``task/lang/index`` for a question and
``task.pool/lang/index`` for an answer. ``to_sample`` wraps a rendered QA in the sample
contract, so every converter fills keys, groups and provenance the same way.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Mapping

import yaml

from datakit.record import LoadedRecord
from datakit.sample import IMAGE_TOKEN, LANGS, Sample, sample_key

MIN_QUESTIONS = 8
MIN_ANSWERS = 3
QUESTION_POOL = "question"
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LEFTOVER = re.compile(r"\{[^{}]*\}")
_FORMATTER = string.Formatter()


class TemplateError(ValueError):
    """A template file that does not validate, or a phrasing that cannot be filled."""


class MissingTranslation(LookupError):
    """A vocabulary term asked for that has no entry in the requested language."""


@dataclass(frozen=True, slots=True)
class Phrasing:
    text: str
    template_id: str


def template_fields(text: str, where: str) -> frozenset[str]:
    """Named fields of a phrasing; only plain ``{name}`` fields are allowed."""
    names = set()
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as e:
        raise TemplateError(f"{where}: {e} in {text!r}") from e
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise TemplateError(f"{where}: field {{{name}}} must be a plain {{name}} in {text!r}")
        names.add(name)
    return frozenset(names)


def fill(phrasing: Phrasing | str, fields: Mapping[str, Any]) -> str:
    """Fill a phrasing; raise if a field is missing or a placeholder would remain."""
    text, where = (phrasing.text, phrasing.template_id) if isinstance(phrasing, Phrasing) else (phrasing, "phrase")
    missing = template_fields(text, where) - set(fields)
    if missing:
        raise TemplateError(f"{where}: no value for field(s) {sorted(missing)} in {text!r}")
    out = text.format(**fields)
    leftover = _LEFTOVER.search(out)
    if leftover:
        raise TemplateError(f"{where}: placeholder {leftover.group()} left in {out!r}")
    return out


def _load_yaml(name: str) -> Any:
    path = resources.files("datakit") / "templates" / name
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TemplateError(f"templates/{name}: malformed YAML: {e}") from e


def _lang_strings(node: Any, where: str, minimum: int) -> dict[str, tuple[str, ...]]:
    """Validate ``{en: [..], zh: [..]}`` (or single strings when ``minimum`` is 1)."""
    if not isinstance(node, dict) or set(node) != set(LANGS):
        got = sorted(map(str, node)) if isinstance(node, dict) else type(node).__name__
        raise TemplateError(f"{where}: need exactly the languages {sorted(LANGS)}, got {got}")
    out: dict[str, tuple[str, ...]] = {}
    for lang, items in node.items():
        items = [items] if isinstance(items, str) else items
        if not isinstance(items, list) or not all(isinstance(s, str) and s.strip() for s in items):
            raise TemplateError(f"{where}.{lang}: must be a non-empty string or list of them")
        if len(items) < minimum:
            raise TemplateError(f"{where}.{lang}: {len(items)} phrasings, need at least {minimum}")
        if len(set(items)) != len(items):
            raise TemplateError(f"{where}.{lang}: duplicate phrasing")
        out[lang] = tuple(items)
    # A field used in one language must exist in the other: catches typos such as {regoin}.
    en_fields = set().union(*(template_fields(s, f"{where}.en") for s in out["en"]))
    zh_fields = set().union(*(template_fields(s, f"{where}.zh") for s in out["zh"]))
    if en_fields != zh_fields:
        raise TemplateError(f"{where}: fields differ between en {sorted(en_fields)} and zh {sorted(zh_fields)}")
    return out


class TemplateBank:
    """The phrasing pools of one template file."""

    def __init__(self, name: str, raw: Any) -> None:
        self.name = name
        if not isinstance(raw, dict) or not raw:
            raise TemplateError(f"templates/{name}: expected a mapping of task -> pools")
        self._pools: dict[tuple[str, str, str], tuple[str, ...]] = {}
        for task, pools in raw.items():
            where = f"templates/{name}: {task}"
            if not isinstance(pools, dict) or QUESTION_POOL not in pools:
                raise TemplateError(f"{where}: needs a '{QUESTION_POOL}' pool")
            for pool, node in pools.items():
                minimum = MIN_QUESTIONS if pool == QUESTION_POOL else MIN_ANSWERS
                for lang, items in _lang_strings(node, f"{where}.{pool}", minimum).items():
                    if lang == "zh" and not all(_CJK.search(s) for s in items):
                        raise TemplateError(f"{where}.{pool}.zh: a phrasing has no Chinese text")
                    self._pools[(str(task), str(pool), lang)] = items
        self.tasks = tuple(dict.fromkeys(t for t, _, _ in self._pools))

    def pool(self, task: str, pool: str, lang: str) -> tuple[str, ...]:
        try:
            return self._pools[(task, pool, lang)]
        except KeyError:
            raise TemplateError(f"templates/{self.name}: no pool {task}.{pool} in {lang!r}") from None

    def pick(self, task: str, pool: str, lang: str, rng: random.Random) -> Phrasing:
        """One phrasing chosen by ``rng`` (seeded per sample by the caller)."""
        items = self.pool(task, pool, lang)
        index = rng.randrange(len(items))
        tid = f"{task}/{lang}/{index}" if pool == QUESTION_POOL else f"{task}.{pool}/{lang}/{index}"
        return Phrasing(items[index], tid)


class Vocabulary:
    """Hand translations: ``term(group, key, lang)``, ``label(source, label, lang)``, phrases."""

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise TemplateError("templates/vocabulary.yaml: expected a mapping of groups")
        self._terms: dict[tuple[str, str], dict[str, str]] = {}
        self._labels: dict[tuple[str, str], dict[str, str]] = {}
        for group, entries in raw.items():
            if not isinstance(entries, dict):
                raise TemplateError(f"templates/vocabulary.yaml: {group}: expected a mapping")
            if group == "labels":
                for source, labels in entries.items():
                    for key, node in self._entries(labels, f"labels.{source}"):
                        self._labels[(str(source), key)] = node
            else:
                for key, node in self._entries(entries, group):
                    self._terms[(str(group), key)] = node

    @staticmethod
    def _entries(entries: Any, where: str) -> Iterable[tuple[str, dict[str, str]]]:
        if not isinstance(entries, dict):
            raise TemplateError(f"templates/vocabulary.yaml: {where}: expected a mapping")
        for key, node in entries.items():
            if not isinstance(key, str):  # YAML turns yes/no/0/1 keys into bools and ints
                raise TemplateError(f"templates/vocabulary.yaml: {where}: key {key!r} must be quoted")
            langs = _lang_strings(node, f"vocabulary.yaml: {where}.{key}", 1)
            yield key, {lang: items[0] for lang, items in langs.items()}

    def has(self, group: str, key: str) -> bool:
        return (group, key) in self._terms

    def keys(self, group: str) -> tuple[str, ...]:
        return tuple(k for g, k in self._terms if g == group)

    def term(self, group: str, key: str | None, lang: str) -> str:
        node = self._terms.get((group, str(key)))
        if node is None or lang not in node:
            raise MissingTranslation(f"vocabulary.yaml has no {group}.{key} in {lang!r}")
        return node[lang]

    def label(self, source: str, label: str, lang: str) -> str:
        node = self._labels.get((source, label))
        if node is None or lang not in node:
            raise MissingTranslation(f"vocabulary.yaml has no labels.{source}.{label} in {lang!r}")
        return node[lang]

    def phrase(self, key: str, lang: str, **fields: Any) -> str:
        return fill(Phrasing(self.term("phrases", key, lang), f"phrases.{key}/{lang}"), fields)

    def join(self, items: list[str], lang: str, last: str = "last") -> str:
        """``a``, ``a and b``, ``a, b and c`` in the language's own punctuation (``last="or"``:
        ``a, b or c``)."""
        if len(items) <= 1:
            return "".join(items)
        sep, last = self.term("lists", "separator", lang), self.term("lists", last, lang)
        return sep.join(items[:-1]) + last + items[-1]


def image_words(loaded: LoadedRecord, lang: str) -> dict[str, str]:
    """The ``{modality}`` and ``{body_part}`` fields of a record's questions in ``lang``.

    Where the body part and the modality are the same word in a language (Chinese 眼底 for
    both the retina and fundus photography), the body part is left empty, so a question reads
    这张眼底图像, never 这张眼底眼底图像.
    """
    vocab = vocabulary()
    modality = vocab.term("modalities", sample_modality(loaded), lang)
    body_part = vocab.term("body_parts", loaded.facts.get("body_part"), lang)
    return {"modality": modality, "body_part": "" if body_part == modality else body_part}


# Reader terms outside the vocabulary, as two stage-corpora readers still name their records
# (MIMIC-CXR-VQA, OpenMedReason), and the vocabulary's word for each.
_READER_TERMS = {"xray": "x-ray", "biomedical": "mixed"}


def sample_modality(loaded: LoadedRecord) -> str:
    """The imaging modality a sample states (one vocabulary, ``sample.MODALITIES``): a volume
    reader's records are stored as slice sequences but their modality is the imaging
    (``facts["imaging"]``: ct, mri); every other record's is its reader's."""
    modality = str(loaded.facts.get("imaging") or loaded.record.modality)
    return _READER_TERMS.get(modality, modality)


@lru_cache(maxsize=None)
def template_bank(name: str) -> TemplateBank:
    """The validated pools of ``templates/<name>.yaml``, loaded once per process."""
    return TemplateBank(f"{name}.yaml", _load_yaml(f"{name}.yaml"))


@lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    return Vocabulary(_load_yaml("vocabulary.yaml"))


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedQA:
    """One question and answer in one language, with the phrasings they came from."""

    question: str
    reply: str  # the gpt turn
    answer: str  # the structured answer: option letter, yes/no word, or the reply
    question_id: str
    answer_id: str | None = None
    options: list[str] | None = None


def to_sample(loaded: LoadedRecord, *, converter: str, task: str, lang: str, question_type: str,
              qa: RenderedQA, key_task: str | None = None, mask_files: bool = False) -> Sample:
    """The sample contract's fields around one rendered QA (one ``<image>`` per medium).

    ``key_task`` widens the key when one record gives several samples of a task (one per organ);
    ``mask_files`` lists the record's mask files in the provenance (answers read from masks).
    """
    record = loaded.record
    source_file = record.primary_file
    if source_file not in loaded.file_sha256:
        raise KeyError(f"{record.uid}: no sha256 for {source_file!r} in LoadedRecord.file_sha256")
    provenance: dict[str, Any] = {
        "source_file": source_file,
        "sha256": loaded.file_sha256[source_file],
        "converter": converter,
        "template_id": qa.question_id,
    }
    if qa.answer_id is not None:
        provenance["answer_template_id"] = qa.answer_id
    if mask_files and record.masks:
        provenance["mask_files"] = [record.rel(p) for p in record.masks]
    prefix = "".join(f"{IMAGE_TOKEN}\n" for _ in loaded.media)
    return Sample(
        key=sample_key(record.source, record.record_id, key_task or task, lang),
        source=record.source,
        modality=sample_modality(loaded),
        task=task,
        lang=lang,
        group=record.uid,
        question_type=question_type,
        conversation=[
            {"from": "human", "value": prefix + qa.question},
            {"from": "gpt", "value": qa.reply},
        ],
        answer=qa.answer,
        media=list(loaded.media),
        options=qa.options,
        provenance=provenance,
    )
