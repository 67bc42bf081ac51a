"""The spatial and labels converters on hand-built ultrasound records whose answers are known."""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from datakit.converters import labels as labels_mod
from datakit.converters.base import ConvertContext
from datakit.converters.templates import (
    MIN_QUESTIONS,
    MissingTranslation,
    Phrasing,
    TemplateBank,
    TemplateError,
    fill,
    template_bank,
    template_fields,
)
from datakit.errors import Rejected
from datakit.record import LoadedRecord, Media, RawRecord
from datakit.registry import get_converter
from datakit.sample import IMAGE_TOKEN, Sample

TEMPLATES = Path(labels_mod.__file__).resolve().parents[1] / "templates"
SPATIAL = get_converter("spatial")
LABELS = get_converter("labels")
CJK = re.compile(r"[\u4e00-\u9fff]")
PLACEHOLDER = re.compile(r"\{[^{}]*\}")
H, W = 60, 90
BUSI_LABELS = ("benign", "malignant", "normal")


def png(h: int = H, w: int = W) -> Media:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w), 90, dtype=np.uint8)).save(buf, format="PNG")
    return Media(data=buf.getvalue(), ext="png", width=w, height=h)


def busi(mask: np.ndarray, label: str = "benign", n: int = 1, media: Media | None = None) -> LoadedRecord:
    media = media or png()
    image, mask_file = Path(f"{label}/{label} ({n}).png"), Path(f"{label}/{label} ({n})_mask.png")
    raw = RawRecord(source="busi", record_id=f"{label}/{label} ({n})", modality="ultrasound",
                    images=(image,), masks=(mask_file,), label=label)
    return LoadedRecord(
        record=raw,
        media=[media],
        masks={"lesion": mask},
        facts={"label": label, "label_set": BUSI_LABELS, "body_part": "breast",
               "lesion_mask": "lesion", "lesion_expected": label != "normal"},
        file_sha256={image.as_posix(): media.sha256, mask_file.as_posix(): "0" * 64},
    )


def abdomen(organs: dict[str, np.ndarray], annotated: tuple[str, ...] = ()) -> LoadedRecord:
    media = png()
    image = Path("AUS/images/train/a1.png")
    raw = RawRecord(source="abdomen_us", record_id="AUS/train/a1", modality="ultrasound",
                    images=(image,), masks=(Path("AUS/annotations/train/a1.png"),))
    facts = {"label": None, "label_set": (), "body_part": "abdomen", "lesion_mask": None, "lesion_expected": None}
    if annotated:
        facts["organs_annotated"] = annotated
    return LoadedRecord(record=raw, media=[media], masks=organs, facts=facts,
                        file_sha256={image.as_posix(): media.sha256})


def blank() -> np.ndarray:
    return np.zeros((H, W), dtype=bool)


def run(conv, loaded: LoadedRecord, seed: int = 7, **options) -> dict[tuple[str, str], Sample]:
    samples = conv.fn(loaded, ConvertContext(seed=seed, tasks=conv.tasks, options=options))
    out = {}
    for s in samples:
        assert (s.task, s.lang) not in out, f"two samples for {s.task}/{s.lang}"
        out[(s.task, s.lang)] = s
    return out


def reply(s: Sample) -> str:
    return s.conversation[1]["value"]


def answer_pool(s: Sample) -> str:
    return s.provenance["answer_template_id"].split("/")[0].split(".")[1]


# --- spatial: answers on masks with a known right answer -------------------------------------


def test_one_lesion_upper_left() -> None:
    m = blank()
    # wider than tall and off the diagonal, so an x/y swap changes the box
    m[3:15, 9:36] = True  # box (9, 3, 36, 15) of 90 x 60 -> [0.100, 0.050, 0.400, 0.250]
    out = run(SPATIAL, busi(m))
    assert out[("lesion_presence", "en")].answer == "yes" and out[("lesion_presence", "zh")].answer == "是"
    for lang in ("en", "zh"):
        assert answer_pool(out[("lesion_count", lang)]) == "answer_one"
        assert "[0.100, 0.050, 0.400, 0.250]" in reply(out[("lesion_bbox", lang)])
    assert "upper-left" in reply(out[("lesion_location", "en")])
    assert "not to the patient" in reply(out[("lesion_location", "en")])  # image left, said so
    assert "左上方" in reply(out[("lesion_location", "zh")])
    assert "6.0%" in reply(out[("lesion_size", "en")]) and "6.0%" in reply(out[("lesion_size", "zh")])


def test_two_lesions_both_reported() -> None:
    m = blank()
    m[40:55, 60:85] = True  # lower right, larger
    m[5:15, 5:20] = True  # upper left
    out = run(SPATIAL, busi(m), location_box=True)
    boxes = ["[0.667, 0.667, 0.944, 0.917]", "[0.056, 0.083, 0.222, 0.250]"]
    for lang, words in (("en", ["lower-right", "upper-left"]), ("zh", ["右下方", "左上方"])):
        assert answer_pool(out[("lesion_count", lang)]) == "answer_many"
        assert "2" in reply(out[("lesion_count", lang)])
        location = reply(out[("lesion_location", lang)])
        for word, box in zip(words, boxes):
            assert word in location and box in location
        assert location.index(words[0]) < location.index(words[1])  # largest first
        bbox = reply(out[("lesion_bbox", lang)])
        assert all(box in bbox for box in boxes)
        assert all(word in reply(out[("lesion_size", lang)]) for word in words)


def test_lesions_sharing_a_region_name_it_once() -> None:
    m = blank()
    m[3:10, 3:10] = True  # two lesions, both in the upper-left ninth
    m[12:18, 14:24] = True
    m[40:55, 60:85] = True  # and one lower right
    for box in (False, True):
        out = run(SPATIAL, busi(m), location_box=box)
        en, zh = reply(out[("lesion_location", "en")]), reply(out[("lesion_location", "zh")])
        assert en.count("upper-left") == 1 and "(2 lesions" in en and en.count("lower-right") == 1
        assert zh.count("左上方") == 1 and "2个病灶" in zh
        assert (en.count("[0.") == 3) is box  # every box still listed when asked for


def test_lesion_at_centre() -> None:
    m = blank()
    m[20:40, 35:55] = True
    out = run(SPATIAL, busi(m))
    assert "centre of the image" in reply(out[("lesion_location", "en")])
    assert "正中央" in reply(out[("lesion_location", "zh")])
    # No left or right is involved, so no note about sides.
    assert "patient" not in reply(out[("lesion_location", "en")])


def test_empty_mask_says_no_lesion() -> None:
    out = run(SPATIAL, busi(blank(), label="normal"))
    assert {task for task, _ in out} == {"lesion_presence", "lesion_count", "lesion_location"}
    assert out[("lesion_presence", "en")].answer == "no" and out[("lesion_presence", "zh")].answer == "否"
    assert reply(out[("lesion_presence", "en")]).startswith("No")
    assert reply(out[("lesion_presence", "zh")]).startswith("否")
    for lang in ("en", "zh"):
        assert answer_pool(out[("lesion_count", lang)]) == "answer_none"
        assert answer_pool(out[("lesion_location", lang)]) == "answer_none"


def test_speckle_is_not_a_lesion() -> None:
    m = blank()
    m[20:40, 10:30] = True
    m[2, 80] = m[3, 81] = m[55, 5] = True  # stray pixels: a diagonal pair and a single one
    out = run(SPATIAL, busi(m))
    assert answer_pool(out[("lesion_count", "en")]) == "answer_one"
    assert "[0.111, 0.333, 0.333, 0.667]" in reply(out[("lesion_bbox", "en")])
    # With no minimum at all the strays count as lesions (the diagonal pair is one).
    out = run(SPATIAL, busi(m), min_pixels=1, min_fraction=0.0)
    assert "3" in reply(out[("lesion_count", "en")])


def test_speckle_only_on_a_lesion_label_is_rejected() -> None:
    m = blank()
    m[2, 2] = True
    with pytest.raises(Rejected) as e:
        SPATIAL.fn(busi(m, label="malignant"), ConvertContext(seed=1, tasks=SPATIAL.tasks))
    assert e.value.reason == "empty_mask_for_lesion_label" and e.value.path == "malignant/malignant (1).png"


def test_mask_size_mismatch_is_rejected() -> None:
    m = np.zeros((H + 1, W), dtype=bool)
    m[5:20, 5:20] = True
    with pytest.raises(Rejected) as e:
        SPATIAL.fn(busi(m), ConvertContext(seed=1, tasks=SPATIAL.tasks))
    assert e.value.reason == "mask_size_mismatch" and e.value.path == "benign/benign (1).png"


def test_organs() -> None:
    liver, kidney = blank(), blank()
    liver[5:30, 5:40] = True  # upper left
    out = SPATIAL.fn(abdomen({"liver": liver, "kidney": kidney, "mystery": liver}, annotated=("spleen",)),
                     ConvertContext(seed=3, tasks=SPATIAL.tasks))
    assert not [s for s in out if s.task.startswith("lesion")]  # no lesion mask, no lesion samples
    presence = {(s.key.split("-")[-2], s.lang): s.answer for s in out if s.task == "organ_presence"}
    assert presence == {
        ("organ_presence_kidney", "en"): "no", ("organ_presence_kidney", "zh"): "否",
        ("organ_presence_liver", "en"): "yes", ("organ_presence_liver", "zh"): "是",
        ("organ_presence_spleen", "en"): "no", ("organ_presence_spleen", "zh"): "否",
    }
    located = {s.lang: reply(s) for s in out if s.task == "organ_location"}
    assert set(located) == {"en", "zh"}  # only the liver is there to locate
    assert "the liver" in located["en"] and "upper-left" in located["en"]
    assert "肝脏" in located["zh"] and "左上方" in located["zh"]


# --- both languages, every task, no placeholders, real Chinese --------------------------------


def all_samples(seeds: range) -> list[Sample]:
    two = blank()
    two[40:55, 60:85] = True
    two[5:15, 5:20] = True
    one = blank()
    one[20:40, 35:55] = True
    liver = blank()
    liver[10:50, 50:88] = True
    records = [busi(two, n=1), busi(one, label="malignant", n=2), busi(blank(), label="normal", n=3),
               abdomen({"liver": liver, "pancreas": blank()})]
    out = []
    for seed in seeds:
        for rec in records:
            for conv in (SPATIAL, LABELS):
                out += conv.fn(rec, ConvertContext(seed=seed, tasks=conv.tasks, options={}))
    return out


def test_both_languages_for_every_task_and_no_placeholder() -> None:
    samples = all_samples(range(40))
    by_task = Counter((s.task, s.lang) for s in samples)
    for task in SPATIAL.tasks + LABELS.tasks:
        assert by_task[(task, "en")] > 0 and by_task[(task, "en")] == by_task[(task, "zh")], task
    for s in samples:
        assert s.key.endswith(f"-{s.lang}")
        assert s.group.startswith(f"{s.source}:")
        assert s.conversation[0]["value"].startswith(IMAGE_TOKEN + "\n")
        for turn in s.conversation:
            assert not PLACEHOLDER.search(turn["value"]), turn["value"]
        if s.lang == "zh":
            question = s.conversation[0]["value"].removeprefix(IMAGE_TOKEN + "\n")
            assert CJK.search(question) and CJK.search(reply(s)), (question, reply(s))
            assert all(CJK.search(o) for o in s.options or [])
    # Twins share a group; phrasings vary over seeds.
    groups = Counter((s.group, s.task) for s in samples if s.task != "organ_presence")
    assert set(groups.values()) == {80}
    assert len({s.provenance["template_id"] for s in samples}) > 100


def test_every_phrasing_fills() -> None:
    fields = {"modality": "m", "body_part": "b", "region": "r", "count": "2", "items": "i", "box": "[0, 0, 1, 1]",
              "size": "s", "percent": "1.0", "organ": "o", "label": "l"}
    for name in ("spatial", "labels"):
        bank = template_bank(name)
        for (task, pool, lang), texts in bank._pools.items():
            for i, text in enumerate(texts):
                assert not PLACEHOLDER.search(fill(Phrasing(text, f"{task}/{lang}/{i}"), fields))


def test_question_pools_have_eight_phrasings_per_language() -> None:
    for name, conv in (("spatial", SPATIAL), ("labels", LABELS)):
        raw = yaml.safe_load((TEMPLATES / f"{name}.yaml").read_text(encoding="utf-8"))
        assert set(raw) == set(conv.tasks)
        for task in conv.tasks:
            for lang in ("en", "zh"):
                questions = raw[task]["question"][lang]
                assert len(set(questions)) >= MIN_QUESTIONS >= 8, (task, lang)


# --- labels: multiple choice ----------------------------------------------------------------


def mcq(loaded: LoadedRecord, seed: int = 5) -> dict[str, Sample]:
    samples = LABELS.fn(loaded, ConvertContext(seed=seed, tasks=("diagnosis_mcq",)))
    return {s.lang: s for s in samples}


def dermoscopy(label: str, n: int) -> LoadedRecord:
    media = png()
    image = Path(f"images/PAT_{n}.png")
    raw = RawRecord(source="pad_ufes_20", record_id=f"PAT_{n}", modality="dermoscopy", images=(image,), label=label)
    return LoadedRecord(record=raw, media=[media], facts={
        "label": label, "label_set": ("ack", "bcc", "mel", "nev", "scc", "sek"), "body_part": "skin"},
        file_sha256={image.as_posix(): media.sha256})


@pytest.mark.parametrize("make, n_options", [(lambda i: busi(blank(), "normal", i), 3),
                                             (lambda i: dermoscopy(("bcc", "mel", "nev")[i % 3], i), 4)])
def test_mcq_options(make, n_options: int) -> None:
    orders, letters = set(), Counter()
    for i in range(60):
        loaded = make(i)
        twins = mcq(loaded)
        en, zh = twins["en"], twins["zh"]
        assert en.answer == zh.answer and en.answer in "ABCD"[:n_options]
        assert len(en.options) == len(set(en.options)) == len(zh.options) == n_options
        index = "ABCD".index(en.answer)
        truth = {lang: labels_mod.vocabulary().label(loaded.record.source, loaded.facts["label"], lang)
                 for lang in ("en", "zh")}
        assert en.options[index] == truth["en"] and zh.options[index] == truth["zh"]
        assert reply(en) == f"{en.answer}. {truth['en']}" and reply(zh) == f"{zh.answer}. {truth['zh']}"
        for s in (en, zh):
            for letter, option in zip("ABCD", s.options):
                assert f"\n{letter}. {option}\n" in s.conversation[0]["value"]
        assert en.question_type == "mcq" and en.group == zh.group
        orders.add(tuple(en.options))
        letters[en.answer] += 1
    assert len(orders) > 3 and len(letters) == n_options  # option order is not constant


def test_mcq_is_reproducible() -> None:
    """Over many records, so an unseeded shuffle cannot pass by luck: two calls of a 3-option MCQ
    agree by chance 1 time in 6 per record, (1/6)^40 for all forty; four options, (1/24)^40."""

    def samples(conv, loaded: LoadedRecord, seed: int) -> list[bytes]:
        return [s.json_bytes() for s in conv.fn(loaded, ConvertContext(seed=seed, tasks=conv.tasks))]

    records = [busi(blank(), "normal", n) for n in range(40)]
    records += [dermoscopy(("bcc", "mel", "nev", "ack")[n % 4], n) for n in range(40)]
    first = [samples(LABELS, r, 11) for r in records]
    assert first == [samples(LABELS, r, 11) for r in records]
    assert all(len(a) == 4 for a in first)
    # the seed is used: another seed reorders the options of some records
    assert sum(a != b for a, b in zip(first, [samples(LABELS, r, 12) for r in records])) > 10
    m = blank()
    m[10:30, 20:50] = True
    lesions = [busi(m, "benign", n) for n in range(20)]
    spatial = [samples(SPATIAL, r, 11) for r in lesions]
    assert spatial == [samples(SPATIAL, r, 11) for r in lesions]


def test_open_diagnosis_and_provenance() -> None:
    out = run(LABELS, busi(blank(), "normal"))
    en, zh = out[("diagnosis_open", "en")], out[("diagnosis_open", "zh")]
    assert "normal breast tissue" in reply(en) and "正常乳腺组织" in reply(zh)
    assert en.provenance["source_file"] == "normal/normal (1).png"
    assert en.provenance["sha256"] == hashlib.sha256(en.media[0].data).hexdigest()
    assert en.provenance["converter"] == "labels" and "mask_files" not in en.provenance
    assert re.fullmatch(r"diagnosis_open/en/\d+", en.provenance["template_id"])


def test_label_errors() -> None:
    no_label = busi(blank(), "normal")
    no_label.facts["label"] = None
    assert LABELS.fn(no_label, ConvertContext(seed=1, tasks=LABELS.tasks)) == []
    stray = busi(blank(), "normal")
    stray.facts["label"] = "cyst"
    with pytest.raises(Rejected, match="label_not_in_label_set"):
        LABELS.fn(stray, ConvertContext(seed=1, tasks=LABELS.tasks))
    untranslated = busi(blank(), "normal")
    untranslated.facts["label_set"] = BUSI_LABELS + ("cyst",)
    untranslated.facts["label"] = "cyst"
    with pytest.raises(MissingTranslation, match="labels.busi.cyst"):
        LABELS.fn(untranslated, ConvertContext(seed=1, tasks=("diagnosis_open",), langs=("zh",)))


# --- template validation ----------------------------------------------------------------------


def test_fill_refuses_missing_fields_and_leftovers() -> None:
    with pytest.raises(TemplateError, match="organ"):
        fill(Phrasing("Is {organ} here?", "t/en/0"), {})
    with pytest.raises(TemplateError, match="left"):
        fill(Phrasing("literal {{organ}}", "t/en/0"), {})
    with pytest.raises(TemplateError, match="plain"):
        template_fields("{box:.3f}", "t")


def test_template_bank_validation() -> None:
    questions = {"en": [f"Q{i} {{modality}}?" for i in range(8)], "zh": [f"问题{i}{{modality}}？" for i in range(8)]}
    TemplateBank("ok.yaml", {"t": {"question": questions}})
    with pytest.raises(TemplateError, match="at least 8"):
        TemplateBank("short.yaml", {"t": {"question": {"en": questions["en"][:7], "zh": questions["zh"]}}})
    with pytest.raises(TemplateError, match="no Chinese"):
        TemplateBank("ascii.yaml", {"t": {"question": {"en": questions["en"], "zh": questions["en"]}}})
    typo = {"en": questions["en"], "zh": [q.replace("modality", "modalty") for q in questions["zh"]]}
    with pytest.raises(TemplateError, match="fields differ"):
        TemplateBank("typo.yaml", {"t": {"question": typo}})
    with pytest.raises(TemplateError, match="languages"):
        TemplateBank("en.yaml", {"t": {"question": {"en": questions["en"]}}})


# --- spatial: every field of every answer, the side note, the options (mutation testing) -------

SIDE_NOTE = "not to the patient"


def test_no_field_of_any_answer_is_left_empty() -> None:
    """Over many seeds every phrasing of every task is drawn: a count, size, percent or region
    passed as nothing would read "None"; the sizes and percents are the lesions' own."""
    m = blank()
    m[40:55, 60:85] = True  # lower right: 375 px of 5400 = 6.9 %
    m[5:15, 5:20] = True  # upper left: 150 px = 2.8 %
    liver = blank()
    liver[20:40, 60:88] = True  # middle right: 560 px = 10.4 %
    one = blank()
    one[3:15, 9:36] = True
    for seed in range(12):
        single = run(SPATIAL, busi(one), seed=seed)
        assert "None" not in reply(single[("lesion_size", "en")]) and "medium-sized" in reply(single[("lesion_size", "en")])
        for box in (False, True):
            out = run(SPATIAL, busi(m), seed=seed, location_box=box)
            out |= run(SPATIAL, abdomen({"liver": liver}), seed=seed, location_box=box)
            for s in out.values():
                assert "None" not in reply(s) and "None" not in s.conversation[0]["value"], reply(s)
            for lang in ("en", "zh"):
                size = reply(out[("lesion_size", lang)])
                assert "6.9%" in size and "2.8%" in size
                assert "[0." not in size  # a size item names the region, never a box
                assert "10.4%" in reply(out[("organ_location", lang)])
                assert "[0." not in reply(out[("organ_location", lang)])
            assert "medium-sized" in reply(out[("lesion_size", "en")])


def test_side_note_goes_with_left_or_right_only() -> None:
    m = blank()
    m[25:35, 70:85] = True  # middle right
    out = run(SPATIAL, busi(m))
    assert SIDE_NOTE in reply(out[("lesion_location", "en")])
    for task in ("lesion_presence", "lesion_count", "lesion_bbox", "lesion_size"):
        assert SIDE_NOTE not in reply(out[(task, "en")]), task  # no region named, no note
    two = blank()
    two[40:55, 60:85] = True
    two[5:15, 5:20] = True
    assert SIDE_NOTE in reply(run(SPATIAL, busi(two))[("lesion_size", "en")])  # items name regions
    liver = blank()
    liver[20:40, 60:88] = True
    assert SIDE_NOTE in reply(run(SPATIAL, abdomen({"liver": liver}))[("organ_location", "en")])


def test_location_box_only_when_asked() -> None:
    m = blank()
    m[3:15, 9:36] = True
    box = "[0.100, 0.050, 0.400, 0.250]"
    assert box not in reply(run(SPATIAL, busi(m))[("lesion_location", "en")])
    assert box in reply(run(SPATIAL, busi(m), location_box=True)[("lesion_location", "en")])
    with pytest.raises(ValueError, match=r"spatial: location_box must be true or false, got 'yes'"):
        run(SPATIAL, busi(m), location_box="yes")


def test_presence_phrasing_agrees_with_the_answer() -> None:
    m = blank()
    m[3:15, 9:36] = True
    for seed in range(5):
        out = run(SPATIAL, busi(m), seed=seed)
        assert answer_pool(out[("lesion_presence", "en")]) == "answer_yes"
        # an open answer is the reply itself
        assert out[("lesion_count", "en")].answer == reply(out[("lesion_count", "en")])
        liver = blank()
        liver[5:30, 5:40] = True
        organs = SPATIAL.fn(abdomen({"liver": liver, "kidney": blank()}),
                            ConvertContext(seed=seed, tasks=("organ_presence",)))
        pools = {s.key.split("-")[-2]: answer_pool(s) for s in organs}
        assert pools == {"organ_presence_kidney": "answer_no", "organ_presence_liver": "answer_yes"}


def test_organ_thresholds_follow_the_options() -> None:
    liver = blank()
    liver[20:40, 60:88] = True  # 560 px
    out = SPATIAL.fn(abdomen({"liver": liver}),
                     ConvertContext(seed=1, tasks=("organ_presence",), options={"min_pixels": 1000}))
    assert {s.answer for s in out} == {"no", "否"}  # below the recipe's minimum: speckle


def test_percent_has_two_decimals_only_below_a_tenth() -> None:
    from datakit.converters.geometry import Component, MaskFacts
    from datakit.converters.spatial import format_percent

    def percent(area: int) -> str:
        c = Component(box_px=(0, 0, 1, 1), box=(0.0, 0.0, 0.01, 0.1), centroid=(0.005, 0.05), area_px=area,
                      area_fraction=area / 1000, region="upper_left", size_class="small")
        return format_percent(c, MaskFacts(height=10, width=100, components=(c,), speckle=0, extent=c))

    assert [percent(a) for a in (1, 5, 9, 10, 123)] == ["0.1", "0.5", "0.9", "1.0", "12.3"]
    c = Component(box_px=(0, 0, 1, 1), box=(0.0, 0.0, 0.005, 0.1), centroid=(0.0025, 0.05), area_px=1,
                  area_fraction=0.0005, region="upper_left", size_class="small")
    assert format_percent(c, MaskFacts(height=10, width=200, components=(c,), speckle=0, extent=c)) == "0.05"


def test_mask_sizes_without_a_known_image_size() -> None:
    from datakit.converters.spatial import _check_mask_sizes

    m = np.zeros((50, 80), dtype=bool)
    unknown = [[], [Media(data=b"", ext="png")], [Media(data=b"", ext="png", width=W)],
               [Media(data=b"", ext="png", height=H)]]
    for media in unknown:  # the masks are compared with each other
        loaded = busi(m)
        loaded.media[:] = media
        loaded.masks["other"] = m.copy()
        _check_mask_sizes(loaded)
        loaded.masks["other"] = np.zeros((50, 81), dtype=bool)
        with pytest.raises(Rejected, match="mask_size_mismatch"):
            _check_mask_sizes(loaded)
    with pytest.raises(Rejected) as e:
        _check_mask_sizes(busi(np.zeros((H + 1, W), dtype=bool)))
    assert e.value.detail == "mask 'lesion' is (61, 90), image is (60, 90) (H, W)"
