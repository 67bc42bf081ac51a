"""The data-path error policy: expected bad input is a ``Rejected``; anything else is a bug.

A reader or converter raises ``Rejected`` for input it must refuse (corrupt image, mask of the
wrong size, ...). The build turns it into a manifest row naming the file and reason and goes on
with the other records. Programming errors (any other exception) are never swallowed.
"""

from __future__ import annotations


class Rejected(Exception):
    """An input record that cannot become samples; ``reason`` is a short stable code."""

    def __init__(self, reason: str, path: str | None = None, detail: str = "") -> None:
        self.reason = reason
        self.path = path
        self.detail = detail
        msg = reason if path is None else f"{reason}: {path}"
        super().__init__(f"{msg} ({detail})" if detail else msg)


class RecipeError(ValueError):
    """A recipe file that cannot be used; raised before any work, naming the file and key."""


class EmptyBuildError(RuntimeError):
    """A build with nothing to build: no ``--sources`` folder, none of the recipe's sources in
    it, or zero samples emitted. The message names what was looked for where; ``result`` holds
    the finished build when there is one (its manifest says why every input was refused)."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result
