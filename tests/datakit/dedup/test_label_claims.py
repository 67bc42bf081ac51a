"""What two dedup units say (``label_conflicts``), as properties over random records (hypothesis):
a unit's label is its members' labels joined in order, its claims the closed answers by slot; two
units disagree on a label only when both have one, then on the first shared slot (in slot order)
whose answers differ, and never otherwise. The stages' use of it is test_label_conflicts.py."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.dedup.label_conflicts import disagreement, unit_claims
from datakit.dedup.stages import Unit
from datakit.dedup.summary import SampleSummary

LABELS = st.sampled_from([None, "", "benign", "malignant", "grade 2"])
SLOTS = st.sampled_from(["", "q-en", "q-zh", "organ-en", "organ-zh"])
CLAIMS = st.sampled_from([None, "", "yes", "no", "liver"])


@st.composite
def units(draw, uid: str):
    members = draw(st.lists(st.tuples(LABELS, SLOTS, CLAIMS), min_size=1, max_size=4))
    return Unit(uid, "src", tuple(
        SampleSummary(key=f"{uid}-{i}", group=f"{uid}-{i}", source="src", record_uid=uid, lang="en",
                      question_type="mcq", text="", label=label, slot=slot, claim=claim)
        for i, (label, slot, claim) in enumerate(members)))


@settings(max_examples=200)
@given(a=units("a"), b=units("b"))
def test_units_disagree_on_both_labels_then_on_the_first_shared_slot(a: Unit, b: Unit) -> None:
    la, ca = unit_claims(a)
    lb, cb = unit_claims(b)
    for unit, label, claims in ((a, la, ca), (b, lb, cb)):
        assert label == ("|".join(sorted({m.label for m in unit.members if m.label})) or None)
        want = {}
        for m in unit.members:
            if m.slot and m.claim is not None:
                want[m.slot] = m.claim  # the last member of a slot wins
        assert claims == want
    said = disagreement(a, b)
    if la and lb and la != lb:
        assert said == (la, lb)
        return
    differing = sorted(s for s in ca.keys() & cb.keys() if ca[s] != cb[s])
    if differing:
        s = differing[0]
        assert said == (f"{s}: {ca[s]}", f"{s}: {cb[s]}")
    else:
        assert said is None
    assert (disagreement(b, a) is None) is (said is None)


def _unit(uid: str, *members: tuple[str | None, str, str | None]) -> Unit:
    return Unit(uid, "src", tuple(SampleSummary(key=f"{uid}{i}", group=f"{uid}{i}", source="src", record_uid=uid,
                                                lang="en", question_type="mcq", text="", label=label, slot=slot,
                                                claim=claim) for i, (label, slot, claim) in enumerate(members)))


def test_label_and_claims_by_hand() -> None:
    a = _unit("a", ("malignant", "q-en", "yes"), ("benign", "q-zh", "是"), (None, "", "x"))
    assert unit_claims(a) == ("benign|malignant", {"q-en": "yes", "q-zh": "是"})
    assert unit_claims(_unit("n", (None, "q", None), ("", "", ""))) == (None, {})
    b = _unit("b", ("malignant|benign", "q-en", "no"))
    assert disagreement(a, b) == ("benign|malignant", "malignant|benign")
    same = _unit("c", ("benign", "q-en", "yes"), ("malignant", "z", "1"))
    assert disagreement(a, same) is None  # same label set, the one shared slot agrees
    unlabelled = _unit("d", (None, "q-zh", "否"), (None, "q-en", "no"))
    assert disagreement(a, unlabelled) == ("q-en: yes", "q-en: no")  # slots in order: q-en before q-zh
    assert disagreement(unlabelled, a) == ("q-en: no", "q-en: yes")
    assert disagreement(_unit("e", ("x", "", None)), _unit("f", (None, "", None))) is None
    assert disagreement(_unit("g", (None, "s", "")), _unit("h", (None, "s", "no"))) == ("s: ", "s: no")
