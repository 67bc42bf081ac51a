"""Name -> implementation registries for source readers and converters.

Readers and converters register themselves with a decorator in their own module;
``datakit.sources`` and ``datakit.converters`` import every module, so asking the registry for a
name loads them lazily (nothing heavy happens when ``datakit`` is imported).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from datakit.converters.base import ConverterSpec
    from datakit.sources.base import SourceReader

_SOURCES: dict[str, type["SourceReader"]] = {}
_CONVERTERS: dict[str, "ConverterSpec"] = {}

T = TypeVar("T", bound=type)


def register_source(cls: T) -> T:
    name = cls.name  # type: ignore[attr-defined]
    if name in _SOURCES and _SOURCES[name] is not cls:
        raise ValueError(f"source {name!r} registered twice ({_SOURCES[name]} and {cls})")
    _SOURCES[name] = cls  # type: ignore[assignment]
    return cls


def register_converter(spec: "ConverterSpec") -> "ConverterSpec":
    if spec.name in _CONVERTERS and _CONVERTERS[spec.name] is not spec:
        raise ValueError(f"converter {spec.name!r} registered twice")
    _CONVERTERS[spec.name] = spec
    return spec


def sources() -> dict[str, type["SourceReader"]]:
    importlib.import_module("datakit.sources")
    return dict(sorted(_SOURCES.items()))


def converters() -> dict[str, "ConverterSpec"]:
    importlib.import_module("datakit.converters")
    return dict(sorted(_CONVERTERS.items()))


def get_source(name: str) -> type["SourceReader"]:
    known = sources()
    if name not in known:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(known)}")
    return known[name]


def get_converter(name: str) -> "ConverterSpec":
    known = converters()
    if name not in known:
        raise KeyError(f"unknown converter {name!r}; known: {', '.join(known)}")
    return known[name]


def converter(name: str, tasks: tuple[str, ...], requests: Callable | None = None,
              needs_masks: bool = False, uses_earlier: bool = False) -> Callable:
    """Decorator form: ``@converter("spatial", tasks=(...))`` on a convert function; a converter
    that asks an LLM passes its ``requests`` function (``converters.base``)."""
    from datakit.converters.base import ConverterSpec

    def wrap(fn: Callable) -> Callable:
        register_converter(ConverterSpec(name=name, tasks=tasks, fn=fn, requests=requests, needs_masks=needs_masks,
                                         uses_earlier=uses_earlier))
        return fn

    return wrap
