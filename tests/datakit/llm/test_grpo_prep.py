"""GRPO set from built shards: yes/no share, multiple choice made open-ended, seeded and stable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.llm.grpo_prep import GRPOConfig, mcq_to_open, prepare_grpo, reference_answer
from datakit.llm.tarball import scan_sample_tar
from datakit.record import Media
from datakit.sample import Sample, canonical_json, conversation_doc, sample_key, turn_docs
from datakit.shard_writer import AtomicTarWriter
from llm_records import png_bytes

_IMAGE = Media(data=png_bytes(9), ext="png", width=8, height=8)
_OPTIONS = ["glioma", "meningioma", "pituitary tumour", "no tumour"]


def _sample(i: int, kind: str) -> Sample:
    lang = ("en", "zh")[i % 2]
    q, answer, options, qtype = f"Question {i}: what is seen?", f"finding {i}", None, "open"
    if kind == "mcq":
        correct = i % 4
        listed = "\n".join(f"{'ABCD'[j]}. {o}" for j, o in enumerate(_OPTIONS))
        q = f"Which of the following is the diagnosis in case {i}?\n{listed}\nAnswer with the option's letter."
        answer = ("ABCD"[correct], f"{'ABCD'[correct]}. {_OPTIONS[correct]}", _OPTIONS[correct])[i % 3]
        options, qtype = list(_OPTIONS), "mcq"
    elif kind == "yes_no":
        q, answer = f"Is there a lesion in case {i}?", ("Yes", "No", "是", "否")[i % 4]
        qtype = "yes_no" if i % 3 else "open"  # an open question answered yes/no counts as yes/no too
    elif kind == "caption":
        q, answer, qtype = "Describe this image.", f"A long caption {i}.", "caption"
    return Sample(
        key=sample_key("brain_tumor_mri", f"r{i}", kind, lang), source="brain_tumor_mri", modality="mri",
        task=kind, lang=lang, group=f"brain_tumor_mri:r{i}", question_type=qtype,
        conversation=[{"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": answer}],
        answer=answer, media=[_IMAGE], options=options, provenance={"converter": "labels"},
    )


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    """2,400 samples in three shards: 800 yes/no, 700 multiple choice, 700 open, 200 captions."""
    kinds = ["yes_no"] * 8 + ["mcq"] * 7 + ["open"] * 7 + ["caption"] * 2
    samples = [_sample(i, kinds[i % len(kinds)]) for i in range(2400)]
    root = tmp_path_factory.mktemp("built")
    paths = []
    for n in range(3):
        with AtomicTarWriter(root / f"train-{n:06d}.tar") as tar:
            for s in samples[n * 800:(n + 1) * 800]:
                tar.add_sample(s.key, _shard_parts(s.key, [s]))
        paths.append(tar.path)
    return paths


def _shard_parts(key: str, samples: list[Sample]) -> list[tuple[str, bytes]]:
    """A shard sample (schema fleming-vqa/2) of one or more turns over the same media."""
    doc = conversation_doc(key, [{**s.to_json_dict(), "key": s.key} for s in samples])
    return [("json", canonical_json(doc))] + [(p, m.data) for p, m in zip(samples[0].media_parts(), samples[0].media)]


def _read(out: Path) -> list[dict]:
    return [json.loads(s.parts["json"]) | {"_parts": s.parts} for t in sorted(out.glob("*.tar"))
            for s in scan_sample_tar(t)]


_CFG = GRPOConfig(seed=3, target_size=1000, samples_per_shard=400)


@pytest.fixture(scope="module")
def drawn(shards, tmp_path_factory):
    """One draw shared by the tests that only read it (each draw reads 2,400 samples twice)."""
    out = tmp_path_factory.mktemp("grpo")
    return out, prepare_grpo(shards, out, _CFG)


def _check_share(out: Path, report, expected_total: int) -> None:
    items = _read(out)
    assert len(items) == sum(report.selected.values()) == expected_total
    yes_no = sum(i["turns"][0]["answer"] in ("Yes", "No", "是", "否") for i in items)
    assert yes_no == report.selected["yes_no"]
    assert abs(yes_no / len(items) - 0.05) <= 0.01
    assert report.candidates == {"yes_no": 800, "mcq": 700, "open": 700}
    assert report.dropped == {"ineligible_question_type": 200}


def test_yes_no_share_is_five_percent_of_the_target(drawn):
    _check_share(*drawn, expected_total=1000)


def test_yes_no_share_holds_when_the_target_exceeds_the_supply(shards, tmp_path):
    # 1,400 other questions are all taken; yes/no are cut to at most 5% of the result: 73 of 1,473.
    report = prepare_grpo(shards, tmp_path, GRPOConfig(seed=3))
    _check_share(tmp_path, report, expected_total=1400 + 73)
    assert report.to_dict()["yes_no_share"] <= 0.05


def test_every_open_ended_item_keeps_its_reference_answer(drawn):
    items = _read(drawn[0])
    from_mcq = [i for i in items if i["provenance"].get("grpo", {}).get("from") == "mcq"]
    assert len(from_mcq) > 300
    for item in items:
        turn = item["turns"][0]
        assert len(item["turns"]) == 1 and len(item["conversations"]) == 2
        assert turn["question_type"] in ("open", "yes_no") and turn["options"] is None
        assert turn["answer"] and item["conversations"][1]["value"] == turn["answer"]
        assert item["_parts"]["0.png"] == _IMAGE.data
    for item in from_mcq:
        case = int(item["conversations"][0]["value"].split("case ")[1].split("?")[0])
        assert item["turns"][0]["answer"] == _OPTIONS[case % 4]
        human = item["conversations"][0]["value"]
        assert human.startswith("<image>\nWhat is the diagnosis in case")
        assert not any(o in human for o in _OPTIONS) and "letter" not in human


def test_same_seed_same_set_other_seed_other_set(shards, drawn, tmp_path):
    first, _ = drawn
    prepare_grpo(shards, tmp_path / "again", _CFG)
    prepare_grpo(shards, tmp_path / "other", GRPOConfig(seed=4, target_size=1000, samples_per_shard=400))
    files = sorted(p.name for p in first.iterdir() if p.is_file() and not p.name.endswith(".idx"))
    assert files == ["grpo-000000.tar", "grpo-000001.tar", "grpo-000002.tar", "grpo_report.json"]
    for name in files + [".nv-meta/dataset.yaml", ".nv-meta/split.yaml"]:
        assert (tmp_path / "again" / name).read_bytes() == (first / name).read_bytes()
    keys = [{s.key for t in sorted(d.glob("*.tar")) for s in scan_sample_tar(t, read=frozenset())}
            for d in (first, tmp_path / "other")]
    assert len(keys[0]) == len(keys[1]) == 1000 and keys[0] != keys[1]


def test_reference_answer_forms_and_chinese_rewrite():
    assert reference_answer("B", _OPTIONS) == reference_answer("(b)", _OPTIONS) == "meningioma"
    assert reference_answer("C. pituitary tumour", _OPTIONS) == "pituitary tumour"
    assert reference_answer("No Tumour", _OPTIONS) == "no tumour"
    assert reference_answer("E", _OPTIONS) is None and reference_answer("B. glioma", _OPTIONS) is None
    d = {"lang": "zh", "turns": [{"options": ["胶质瘤", "脑膜瘤"], "answer": "B", "question_type": "mcq"}],
         "provenance": {},
         "conversations": [{"from": "human", "value": "<image>\n以下哪项是诊断？\n选项：\nA. 胶质瘤\nB. 脑膜瘤"},
                           {"from": "gpt", "value": "B"}]}
    out = mcq_to_open(d)
    assert out["conversations"][0]["value"] == "<image>\n什么是诊断？\n请用简短的词语回答问题。"
    assert out["turns"][0]["answer"] == "脑膜瘤" and out["provenance"]["grpo"]["options"] == ["胶质瘤", "脑膜瘤"]
    assert mcq_to_open({**d, "turns": [{**d["turns"][0], "answer": "Z"}]}) == "mcq_answer_not_in_options"


def test_grpo_set_is_an_energon_dataset(drawn):
    """The drawn set is its own Energon dataset: energon's loader reads every sample back."""
    from megatron.energon import DefaultTaskEncoder, WorkerConfig, get_loader, get_val_dataset

    from datakit.energon_format import COOKERS

    class Encoder(DefaultTaskEncoder):
        cookers = COOKERS

    out, report = drawn
    ds = get_val_dataset(out, split_part="train", worker_config=WorkerConfig(rank=0, world_size=1, num_workers=0),
                         batch_size=None, task_encoder=Encoder())
    seen = [s for s in get_loader(ds)]
    assert len(seen) == sum(report.selected.values()) == 1000
    assert all(s.meta["turns"][0]["question_type"] != "mcq" for s in seen)  # multiple choice made open


def test_a_multi_turn_conversation_gives_one_item_per_turn(tmp_path):
    """Turns of one conversation are drawn as separate single-turn items, each with the image."""
    turns = [_sample(0, "mcq"), _sample(2, "open"), _sample(4, "yes_no")]
    turns = [Sample(**{**{f: getattr(t, f) for f in t.__slots__}, "group": "g", "lang": "en"}) for t in turns]
    with AtomicTarWriter(tmp_path / "in" / "train-000000.tar") as tar:
        tar.add_sample("chat", _shard_parts("chat", turns))
    doc = json.loads(_shard_parts("chat", turns)[0][1])
    assert doc["conversations"][2]["value"] == turns[1].conversation[0]["value"].removeprefix("<image>\n")
    assert [t["conversations"][0]["value"] for t in turn_docs(doc)] == [t.conversation[0]["value"] for t in turns]
    report = prepare_grpo([tar.path], tmp_path / "out", GRPOConfig(seed=1, target_size=10, yes_no_share=0.4))
    items = _read(tmp_path / "out")
    assert sorted(i["turns"][0]["key"] for i in items) == sorted(t.key for t in turns)
    assert all(i["conversations"][0]["value"].startswith("<image>\n") and i["_parts"]["0.png"] == _IMAGE.data
               for i in items)
    assert report.selected == {"mcq": 1, "open": 1, "yes_no": 1}
