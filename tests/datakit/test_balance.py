"""The balance report in every build, recipe caps by seeded down-sampling, and multi-turn vs
single-turn samples."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from datakit.balance import BalanceConfig, apply_caps
from datakit.build import build
from datakit.errors import RecipeError
from datakit.recipe import load_recipe, parse_recipe
from datakit.shard_writer import iter_samples


def _items(n_yes_no: int, n_other: int) -> list[dict]:
    items = []
    for i in range(n_yes_no + n_other):
        qtype = "yes_no" if i < n_yes_no else "open"
        for lang in ("en", "zh"):
            items.append({"key": f"r{i}-{lang}", "record_uid": f"s:r{i}", "slot": f"t-{lang}", "question_type": qtype,
                          "task": "t", "source": "s", "lang": lang, "modality": "ct"})
    return items


def test_caps_hold_drop_the_fewest_and_keep_twins_together():
    cfg = BalanceConfig.from_recipe({"caps": {"question_type": {"yes_no": 0.2}}})
    kept, dropped = apply_caps(_items(50, 100), cfg, seed=3)
    share = sum(s["question_type"] == "yes_no" for s in kept) / len(kept)
    assert share <= 0.2 and len(kept) == 250  # 50 twins of 200 other turns: 25 twins pairs kept
    assert {s["question_type"] for s in dropped} == {"yes_no"}
    gone = Counter(s["record_uid"] for s in dropped)
    assert set(gone.values()) == {2}  # EN and ZH twins go together
    again, _ = apply_caps(_items(50, 100), cfg, seed=3)
    other, _ = apply_caps(_items(50, 100), cfg, seed=4)
    assert [s["key"] for s in again] == [s["key"] for s in kept] != [s["key"] for s in other]
    assert apply_caps(_items(5, 100), cfg, seed=3)[1] == []  # under the cap: nothing dropped


@pytest.mark.parametrize("raw, where", [({"caps": {"colour": {"x": 0.1}}}, "colour"),
                                        ({"caps": {"task": {"x": 1.5}}}, "task.x"), ({"cap": {}}, "balance.cap")])
def test_bad_caps_are_refused(raw, where):
    with pytest.raises(RecipeError, match=where):
        BalanceConfig.from_recipe(raw)


def test_every_build_reports_its_balance(ultrasound_build):
    out = ultrasound_build.out
    report = json.loads((out / "balance_report.json").read_text())
    assert (out / "balance_report.png").read_bytes().startswith(b"\x89PNG")
    for dim in ("source", "task", "question_type", "lang", "modality", "split", "mcq_answer_letters"):
        assert report[dim], dim
    manifest = pl.read_parquet(out / "manifest.parquet").filter(pl.col("kind") == "sample")
    emitted = manifest.filter(pl.col("status") == "emitted")
    assert report["turns"] == emitted.height and report["task"] == dict(Counter(emitted["task"]))
    assert report["conversations"] == emitted["conversation"].n_unique()
    # the recipe caps yes/no questions at 20%: the excess are balanced_out rows
    assert report["yes_no_share"] <= 0.2
    out_rows = manifest.filter(pl.col("status") == "balanced_out")
    assert out_rows.height == sum(report["balanced_out"].values()) > 0
    assert set(out_rows["task"]) <= {"lesion_presence", "organ_presence"}


def test_single_turn_recipes_keep_one_qa_per_sample(tmp_path, sample_sources):
    doc = load_recipe("xray").to_dict()
    multi = build(parse_recipe(doc, Path("xray.yaml")), sample_sources, tmp_path / "multi")
    single = build(parse_recipe({**doc, "multi_turn": False}, Path("xray.yaml")), sample_sources, tmp_path / "single")
    docs = {name: [json.loads(p["json"]) for t in sorted(r.out.glob("*/*.tar")) for _, p in iter_samples(t)]
            for name, r in (("multi", multi), ("single", single))}
    assert all(len(d["turns"]) == 1 for d in docs["single"])
    assert {len(d["turns"]) for d in docs["multi"]} == {2}  # diagnosis mcq + open per record and language
    assert sum(len(d["turns"]) for d in docs["multi"]) == len(docs["single"])
    for d in docs["multi"]:  # the image once, ahead of the first question only
        assert d["conversations"][0]["value"].startswith("<image>\n") and "<image>" not in d["conversations"][2]["value"]
    assert sorted(t["key"] for d in docs["multi"] for t in d["turns"]) == sorted(d["turns"][0]["key"] for d in docs["single"])
