"""Named-tensor sources that read lazily, and the rule tables that rename and reshape them.

A conversion is a chain of sources: safetensors on disk -> renamed to transformers' InternVL
names -> rearranged into Megatron's full state dict. Each link is *pull*-based (a target key knows
which source keys it needs), so a rank that owns one tensor-parallel shard reads only the tensors
it needs, never the whole checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

SAFETENSORS_INDEX = "model.safetensors.index.json"
SINGLE_SAFETENSORS = "model.safetensors"


class TensorSource(Protocol):
    """A read-only mapping from names to tensors that may load on demand."""

    def keys(self) -> Iterable[str]: ...

    def get(self, key: str) -> torch.Tensor: ...


class DictSource:
    """Tensors already in memory."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        self._tensors = tensors

    def keys(self) -> Iterable[str]:
        return self._tensors.keys()

    def get(self, key: str) -> torch.Tensor:
        return self._tensors[key]


class SafetensorsSource:
    """The safetensors files of a Hugging Face checkpoint folder, one file or an indexed set."""

    def __init__(self, folder: Path):
        from safetensors import safe_open

        folder = Path(folder)
        index = folder / SAFETENSORS_INDEX
        if index.exists():
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        elif (folder / SINGLE_SAFETENSORS).exists():
            files = [SINGLE_SAFETENSORS]
            weight_map = {}
        else:
            raise FileNotFoundError(
                f"{folder} holds neither {SINGLE_SAFETENSORS} nor {SAFETENSORS_INDEX}; convert "
                "pytorch_model.bin checkpoints to safetensors first (transformers' save_pretrained does)"
            )
        self._handles = {name: safe_open(str(folder / name), framework="pt") for name in files}
        if not weight_map:
            weight_map = {k: SINGLE_SAFETENSORS for k in self._handles[SINGLE_SAFETENSORS].keys()}
        self._file_of = weight_map

    def keys(self) -> Iterable[str]:
        return self._file_of.keys()

    def get(self, key: str) -> torch.Tensor:
        return self._handles[self._file_of[key]].get_tensor(key)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass(frozen=True, slots=True)
class TensorRule:
    """How one target tensor is built: `build(*[source.get(k) for k in sources])`."""

    sources: tuple[str, ...]
    build: Callable[..., torch.Tensor] = _identity


def rename(source_key: str) -> TensorRule:
    return TensorRule((source_key,))


RuleTable = dict[str, TensorRule]


class MappedSource:
    """The tensors a rule table builds from another source, each built when asked for."""

    def __init__(self, base: TensorSource, rules: RuleTable):
        self.base = base
        self.rules = rules

    def keys(self) -> Iterable[str]:
        return self.rules.keys()

    def get(self, key: str) -> torch.Tensor:
        rule = self.rules[key]
        return rule.build(*(self.base.get(k) for k in rule.sources))


def check_rules_cover(rules: RuleTable, base: TensorSource, what: str,
                      may_skip: Iterable[str] = ()) -> None:
    """Every tensor a rule needs exists in `base`, and every tensor of `base` is used.

    Both directions matter: a missing tensor is a broken checkpoint, an unused one is a tensor
    this conversion would silently drop (say, a QK-norm the config does not declare). `may_skip`
    names tensors that may be present unused (a tied lm_head stored anyway).
    """
    have = set(base.keys())
    needed = {k for rule in rules.values() for k in rule.sources}
    missing = sorted(needed - have)
    unused = sorted(have - needed - set(may_skip))
    if missing or unused:
        raise ValueError(
            f"{what}: the tensors do not match the config. "
            f"missing ({len(missing)}): {missing[:8]}; unexpected ({len(unused)}): {unused[:8]}. "
            "Check that config.json belongs to these weights."
        )


def materialize(source: TensorSource, keys: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    return {k: source.get(k) for k in (source.keys() if keys is None else keys)}


def _shards(tensors: Iterator[tuple[str, torch.Tensor]], max_bytes: int):
    shard: dict[str, torch.Tensor] = {}
    size = 0
    for key, t in tensors:
        nbytes = t.numel() * t.element_size()
        if shard and size + nbytes > max_bytes:
            yield shard
            shard, size = {}, 0
        shard[key] = t
        size += nbytes
    if shard:
        yield shard


def write_safetensors(
    folder: Path, tensors: Iterable[tuple[str, torch.Tensor]], max_shard_bytes: int = 5 << 30
) -> list[str]:
    """Write tensors as `model.safetensors`, or as numbered shards plus the index transformers reads.

    Shards are written as the iterator yields them, so at most one shard is held in memory.
    Returns the file names written.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, list[str]]] = []
    total = 0
    for i, shard in enumerate(_shards(iter(tensors), max_shard_bytes)):
        name = f"model-{i + 1:05d}.safetensors.tmp"
        save_file({k: v.contiguous() for k, v in shard.items()}, str(folder / name),
                  metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in shard.values())
        written.append((name, list(shard)))
    if len(written) == 1:
        (folder / written[0][0]).rename(folder / SINGLE_SAFETENSORS)
        return [SINGLE_SAFETENSORS]
    names = []
    weight_map = {}
    for i, (tmp, keys) in enumerate(written):
        final = f"model-{i + 1:05d}-of-{len(written):05d}.safetensors"
        (folder / tmp).rename(folder / final)
        names.append(final)
        weight_map.update({k: final for k in keys})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return names
