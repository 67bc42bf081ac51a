"""The multi-turn shard sample (``sample.conversation_doc``) and its turns one at a time
(``sample.turn_docs``), field by field: which provenance goes to the top, which stays with its
turn, the ``<image>`` lines only in the first question, a released conversation's turns, and every
refusal with its message. The builds reach these through the merge; here each rule is pinned."""

from __future__ import annotations

import pytest

from datakit.sample import SCHEMA, TURN_FIELDS, conversation_doc, turn_docs

MEDIA = [{"part": "0.png", "sha256": "a" * 64, "width": 4, "height": 3},
         {"part": "1.png", "sha256": "b" * 64, "width": 5, "height": 2}]
PREFIX = "<image>\n<image>\n"


def item(n: int, qtype: str = "open", provenance: dict | None = None, **changes) -> dict:
    """One converter item (``Sample.to_json_dict()`` plus its key) over the two media."""
    out = {
        "schema": "fleming-qa/1", "key": f"src-r1-t{n}-en", "source": "src", "modality": "ct", "lang": "en",
        "group": "src:r1", "task": f"task{n}", "question_type": qtype,
        "conversations": [{"from": "human", "value": f"{PREFIX}Question {n}?"}, {"from": "gpt", "value": f"answer {n}"}],
        "options": ["x", "y"] if qtype == "mcq" else None, "answer": f"answer {n}", "media": MEDIA,
        "provenance": {"converter": "labels", "row": 7, **(provenance or {})},
    }
    out.update(changes)
    return out


def released(qtype: str, pairs: int = 3) -> dict:
    """A released conversation of several question/answer pairs (one item)."""
    conv = []
    for j in range(pairs):
        conv += [{"from": "human", "value": (PREFIX if j == 0 else "") + f"Q{j}"}, {"from": "gpt", "value": f"A{j}"}]
    return item(0, qtype, conversations=conv, answer=f"A{pairs - 1}")


def test_items_of_one_record_become_one_conversation():
    items = [item(0, "mcq", {"template": "t0", "seed": 1}), item(1, "yes_no", {"template": "t1", "seed": 1}),
             item(2, "open", {"template": "t2"})]
    doc = conversation_doc("src-r1-en", items)
    assert doc["schema"] == SCHEMA
    assert {k: doc[k] for k in ("source", "modality", "lang", "group", "media")} == \
        {"source": "src", "modality": "ct", "lang": "en", "group": "src:r1", "media": MEDIA}
    # the media's <image> lines once, in the first question; each answer after its question
    assert doc["conversations"] == [
        {"from": "human", "value": f"{PREFIX}Question 0?"}, {"from": "gpt", "value": "answer 0"},
        {"from": "human", "value": "Question 1?"}, {"from": "gpt", "value": "answer 1"},
        {"from": "human", "value": "Question 2?"}, {"from": "gpt", "value": "answer 2"}]
    # provenance equal in every item goes to the top ("seed" is missing from the last item)
    assert doc["provenance"] == {"converter": "labels", "row": 7}
    assert doc["turns"] == [
        {"task": "task0", "question_type": "mcq", "options": ["x", "y"], "answer": "answer 0", "key": "src-r1-t0-en",
         "provenance": {"template": "t0", "seed": 1}},
        {"task": "task1", "question_type": "yes_no", "options": None, "answer": "answer 1", "key": "src-r1-t1-en",
         "provenance": {"template": "t1", "seed": 1}},
        {"task": "task2", "question_type": "open", "options": None, "answer": "answer 2", "key": "src-r1-t2-en",
         "provenance": {"template": "t2"}},
    ]
    assert set(doc) == {"schema", "source", "modality", "lang", "group", "conversations", "turns", "media",
                        "provenance"}


def test_a_provenance_value_that_differs_stays_with_each_turn():
    doc = conversation_doc("k", [item(0, provenance={"row": 1}), item(1, provenance={"row": 2})])
    assert doc["provenance"] == {"converter": "labels"}
    assert [t["provenance"] for t in doc["turns"]] == [{"row": 1}, {"row": 2}]
    # a value equal to the placeholder of a missing key is still not shared
    doc = conversation_doc("k", [item(0, provenance={"note": None}), item(1)])
    assert "note" not in doc["provenance"] and doc["turns"][0]["provenance"] == {"note": None}


def test_one_item_is_a_one_turn_conversation():
    one = item(0, "mcq")
    doc = conversation_doc("k", [one])
    assert doc["conversations"] == one["conversations"] and doc["provenance"] == one["provenance"]
    assert doc["turns"] == [{**{f: one[f] for f in TURN_FIELDS}, "key": one["key"], "provenance": {}}]


@pytest.mark.parametrize("field,value", [("source", "other"), ("modality", "mri"), ("lang", "zh"),
                                         ("group", "src:r2"), ("media", MEDIA[:1])])
def test_items_that_differ_in_a_conversation_field_are_refused(field, value):
    with pytest.raises(ValueError) as e:
        conversation_doc("src-r1-en", [item(0), item(1, **{field: value})])
    assert str(e.value) == f"conversation src-r1-en: items differ in {field} ({item(0)[field]!r} / {value!r})"


def test_refusals_name_the_conversation_and_the_turn():
    with pytest.raises(ValueError, match=r"^conversation k: no items$"):
        conversation_doc("k", [])
    several = released("open")
    several["key"] = "rel"
    with pytest.raises(ValueError, match=r"^conversation k: item rel of several turns joined with others$"):
        conversation_doc("k", [item(0), several])
    bare = item(1, conversations=[{"from": "human", "value": "<image>\nQuestion 1?"}, {"from": "gpt", "value": "a"}])
    with pytest.raises(ValueError) as e:
        conversation_doc("k", [item(0), bare])
    assert str(e.value) == "conversation k: turn 1 does not open with its 2 <image> line(s): '<image>\\nQuestion 1?'"
    long = item(2, conversations=[{"from": "human", "value": "x" * 100}, {"from": "gpt", "value": "a"}])
    with pytest.raises(ValueError, match=r"turn 2 does not open with its 2 <image> line\(s\): 'x{60}'$"):
        conversation_doc("k", [item(0), item(1), long])


@pytest.mark.parametrize("qtype,earlier", [("mcq", "open"), ("yes_no", "open"), ("caption", "caption"),
                                           ("open", "open")])
def test_a_released_conversation_keeps_its_pairs_in_order(qtype, earlier):
    one = released(qtype)
    doc = conversation_doc("k", [one])
    assert doc["conversations"] == one["conversations"]
    key = one["key"]
    base = {"task": "task0", "provenance": {}}
    assert doc["turns"] == [
        {**base, "question_type": earlier, "options": None, "answer": "A0", "key": key},
        {**base, "question_type": earlier, "options": None, "answer": "A1", "key": f"{key}-turn1",
         "follows_previous": True},
        {**base, "question_type": qtype, "options": one["options"], "answer": "A2", "key": f"{key}-turn2",
         "follows_previous": True},
    ]


def test_a_released_conversation_of_two_pairs():
    first = released("open", pairs=2)
    doc = conversation_doc("k", [first])
    assert len(doc["turns"]) == 2 and [t["answer"] for t in doc["turns"]] == ["A0", "A1"]
    assert [c["value"] for c in doc["conversations"]] == [f"{PREFIX}Q0", "A0", "Q1", "A1"]


def test_each_turn_alone_carries_the_images_and_its_provenance():
    doc = conversation_doc("k", [item(0, "mcq", {"template": "t0"}), item(1, "open", {"template": "t1"})])
    doc["provenance"]["kept"] = "top"
    alone = turn_docs(doc)
    assert [d["conversations"] for d in alone] == [
        [{"from": "human", "value": f"{PREFIX}Question 0?"}, {"from": "gpt", "value": "answer 0"}],
        [{"from": "human", "value": f"{PREFIX}Question 1?"}, {"from": "gpt", "value": "answer 1"}]]
    assert [d["turns"] for d in alone] == [[{**doc["turns"][0], "provenance": {}}], [{**doc["turns"][1], "provenance": {}}]]
    assert [d["provenance"] for d in alone] == [
        {"converter": "labels", "row": 7, "kept": "top", "template": "t0"},
        {"converter": "labels", "row": 7, "kept": "top", "template": "t1"}]
    assert all(d["media"] == MEDIA and d["schema"] == SCHEMA and d["group"] == "src:r1" for d in alone)
    assert doc["turns"][0]["provenance"] == {"template": "t0"}  # the document itself is untouched
    # a turn's provenance wins over the document's for the same key
    doc["turns"][1]["provenance"] = {"row": 9}
    assert turn_docs(doc)[1]["provenance"]["row"] == 9


def test_turns_alone_without_media_or_provenance_and_never_a_following_turn():
    doc = {"schema": SCHEMA, "conversations": [{"from": "human", "value": "Q0"}, {"from": "gpt", "value": "A0"},
                                               {"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"},
                                               {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}],
           "turns": [{"key": "a"}, {"key": "b", "follows_previous": True}, {"key": "c", "follows_previous": False}]}
    alone = turn_docs(doc)
    assert [d["turns"][0]["key"] for d in alone] == ["a", "c"]
    assert [d["conversations"][0]["value"] for d in alone] == ["Q0", "Q2"]  # no media: nothing prefixed
    assert [d["conversations"][1]["value"] for d in alone] == ["A0", "A2"]
    assert all(d["provenance"] == {} for d in alone)
    released_doc = conversation_doc("k", [released("mcq")])
    assert [d["turns"][0]["key"] for d in turn_docs(released_doc)] == [released_doc["turns"][0]["key"]]


def test_turns_alone_of_anything_but_a_shard_sample_are_refused():
    with pytest.raises(ValueError, match=r"^not a fleming-vqa/2 sample: schema 'fleming-qa/1'$"):
        turn_docs(item(0))
    with pytest.raises(ValueError, match=r"^not a fleming-vqa/2 sample: schema None$"):
        turn_docs({})
