"""What two dedup units say, so records that disagree are never merged as duplicates.

A unit's *label* is its records' label (class, grade); its *claims* are its samples' closed
answers (the correct option's text of a multiple choice, the word of a yes/no question) by slot,
the sample's task and language within its record. Two units disagree when both have a label and
the labels differ, or when they answer the same slot differently; open and free-text answers
are not compared (their wording differs between records by design).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datakit.dedup.stages import Unit


def unit_claims(unit: Unit) -> tuple[str | None, dict[str, str]]:
    """A unit's label (its records' labels joined, None without one) and closed answers by slot."""
    label = "|".join(sorted({m.label for m in unit.members if m.label})) or None
    return label, {m.slot: m.claim for m in unit.members if m.slot and m.claim is not None}


def disagreement(a: Unit, b: Unit) -> tuple[str, str] | None:
    """What two units say differently (label first, then the first differing closed answer),
    or None when they agree on everything both state."""
    la, ca = unit_claims(a)
    lb, cb = unit_claims(b)
    if la and lb and la != lb:
        return la, lb
    for slot in sorted(ca.keys() & cb.keys()):
        if ca[slot] != cb[slot]:
            return f"{slot}: {ca[slot]}", f"{slot}: {cb[slot]}"
    return None
