"""Generation: greedy parity with transformers, KV cache vs recomputation, seeded sampling,
log-probs vs the training forward, `fleming generate` (TP1, TP2, PP2 on CPU ranks).

A tiny random InternVL (transformers' own classes, every weight random) is saved with a tiny BPE
tokenizer whose `<IMG_CONTEXT>` is the model's image token. The reference is transformers'
`InternVLForConditionalGeneration.generate` (greedy, `<IMG_CONTEXT>` suppressed as the engine
never samples it) on the very ids and tiles the engine builds (uint8, normalised for transformers
as our model normalises them on its device), one request at a time; the engine runs all cases in
one batch of different prompt lengths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from hf_internvl import random_model
from transformers import (
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
    Qwen2Config,
)

from megatron_fleming.data.tokenizer import IM_END, train_tiny_tokenizer
from megatron_fleming.generate.inputs import RequestEncoder
from megatron_fleming.generate.requests import Request
from megatron_fleming.model.config import VLMConfig
from megatron_fleming.model.pixels import normalize_pixels

REPO = Path(__file__).resolve().parents[2]
MAX_NEW = 8
KV_TOL = 1e-5  # fp32; measured ~2e-6
LOGPROB_TOL = 1e-5  # measured ~1e-6
#: Odd: no TP size divides it, so `--hf` at TP2 loads it padded (Megatron's 128 x TP rows).
VOCAB = 321
TEXTS = ["What is shown in this image? Describe the lesion.", "The scan shows a mass in the upper "
         "left region.", "user assistant system", "Frame video ultrasound liver kidney benign"] * 4


def tiny_internvl(tokenizer) -> InternVLConfig:
    vision = InternVLVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, image_size=56, patch_size=14,
                                  attention_bias=True, norm_type="layer_norm")
    text = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=96, vocab_size=VOCAB,
                       max_position_embeddings=1024, rope_theta=1e6, tie_word_embeddings=False,
                       eos_token_id=tokenizer.token_id(IM_END))
    return InternVLConfig(vision_config=vision, text_config=text, image_seq_length=4,
                          image_token_id=tokenizer.image_context_id, tie_word_embeddings=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, list[dict]]:
    """The checkpoint folder (weights, config, tokenizer, images) and the four cases."""
    folder = tmp_path_factory.mktemp("tiny_internvl")
    tokenizer = train_tiny_tokenizer(TEXTS, vocab_size=300)
    random_model(tiny_internvl(tokenizer), seed=5).save_pretrained(folder)
    tokenizer.save(folder)
    rng = np.random.default_rng(0)
    sizes = {"one": (56, 56), "wide": (120, 56), "a": (90, 60), "b": (60, 90),
             **{f"frame{i}": (64, 48) for i in range(4)}}
    for name, (w, h) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    frames = "".join(f"Frame{i + 1}: <image>\n" for i in range(4))
    cases = [
        {"id": "one_tile", "prompt": "<image>\nWhat is shown?", "images": ["one.png"]},
        {"id": "multi_tile", "prompt": "<image>\nDescribe the lesion.", "images": ["wide.png"]},
        {"id": "two_images", "prompt": "<image><image>\nCompare.", "images": ["a.png", "b.png"]},
        {"id": "video", "prompt": frames + "Summarise.", "modality": "video",
         "images": [f"frame{i}.png" for i in range(4)]},
    ]
    for case in cases:
        case["images"] = [str(folder / name) for name in case["images"]]
    (folder / "cases.json").write_text(json.dumps(cases))
    return folder, cases


def encoder_for(folder: Path) -> RequestEncoder:
    from megatron_fleming.data.tokenizer import load_tokenizer

    hf = InternVLConfig.from_pretrained(folder)
    return RequestEncoder(VLMConfig.from_hf(hf), load_tokenizer(folder), max_tiles=6,
                          system_prompt=None)


@pytest.fixture(scope="module")
def reference(tiny) -> dict[str, list[int]]:
    """transformers' greedy tokens per case, and the tiles each case got."""
    folder, cases = tiny
    model = InternVLForConditionalGeneration.from_pretrained(folder).eval()
    encoder = encoder_for(folder)
    out = {}
    for case in cases:
        p = encoder.prepare(Request(id=case["id"], prompt=case["prompt"],
                                    modality=case.get("modality"),
                                    images=tuple(Path(i) for i in case["images"])))
        ids = torch.tensor([p.input_ids])
        with torch.no_grad():
            tokens = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                    pixel_values=normalize_pixels(p.pixel_values),
                                    do_sample=False,
                                    max_new_tokens=MAX_NEW, min_new_tokens=MAX_NEW,
                                    suppress_tokens=[encoder.image_context_id], pad_token_id=0)
        out[case["id"]] = tokens[0, ids.shape[1]:].tolist()
        out[case["id"] + "/tiles"] = p.pixel_values.shape[0]
    return out


@pytest.fixture(scope="module")
def tp1(torchrun, tiny):
    folder, _ = tiny
    return torchrun("generate_worker.py", 1, ["--hf", str(folder), "--cases",
                                              str(folder / "cases.json"), "--max-new", str(MAX_NEW)])


@pytest.fixture(scope="module")
def tp2(torchrun, tiny):
    folder, _ = tiny
    return torchrun("generate_worker.py", 2, ["--hf", str(folder), "--cases",
                                              str(folder / "cases.json"), "--max-new", str(MAX_NEW),
                                              "--tp", "2", "--checkpoints"], timeout=240)


def test_cases_cover_the_tiling_kinds(reference):
    assert reference["one_tile/tiles"] == 1
    assert reference["multi_tile/tiles"] == 3  # 2 x 1 grid + thumbnail
    assert reference["two_images/tiles"] == 6  # the 6-tile budget shared: 2 + thumbnail each
    assert reference["video/tiles"] == 4  # one tile per frame


@pytest.mark.parametrize("layout", ["tp1", "tp2"])
def test_greedy_equals_transformers_generate(request, reference, tiny, layout):
    got = request.getfixturevalue(layout)
    for case in tiny[1]:
        assert got["greedy"][case["id"]] == reference[case["id"]], case["id"]
        assert got["recompute_greedy"][case["id"]] == reference[case["id"]], case["id"]
    assert got["end_ids"] == [2]  # <|im_end|> of the tiny tokenizer, also the config's EOS


@pytest.mark.parametrize("layout, rows", [("tp1", 384), ("tp2", 512)])
def test_hf_vocabulary_is_padded_for_any_tp_and_padding_never_sampled(request, layout, rows):
    """`--hf` pads the 321-token vocabulary (which TP2 cannot split) as Megatron does, 128 x TP
    rows, and nothing the engine returns comes from a padded row."""
    got = request.getfixturevalue(layout)
    assert got["padded_vocab_size"] == rows and got["vocab_size"] == VOCAB
    returned = [t for tokens in got["greedy"].values() for t in tokens]
    returned += [t for run in got["sampled"].values() for a in run.values() for t in a["tokens"]]
    assert returned and max(returned) < VOCAB


def test_megatron_checkpoints_load_the_same_model(tp2, reference, tiny):
    """Saved as `fleming convert` writes (at TP2) and as a training run, loaded by `load_mcore`."""
    for case in tiny[1]:
        assert tp2["mcore_greedy"][case["id"]] == reference[case["id"]], case["id"]
        assert tp2["run_greedy"][case["id"]] == reference[case["id"]], case["id"]
    assert tp2["mcore_end_ids"] == [2]


@pytest.mark.parametrize("layout", ["tp1", "tp2"])
def test_kv_cache_step_logits_equal_full_recomputation(request, layout):
    got = request.getfixturevalue(layout)
    assert set(got["kv_max_diff"]) == {"1.0", "0.25"}
    for delta, diff in got["kv_max_diff"].items():
        assert diff <= KV_TOL, (delta, diff)
    if "delta_effect" in got:
        assert got["delta_effect"] > 1e-2  # the fractional positions do reach the logits


@pytest.mark.parametrize("layout", ["tp1", "tp2"])
def test_returned_logprobs_equal_training_forward(request, layout):
    got = request.getfixturevalue(layout)
    assert got["logprob_max_diff"] <= LOGPROB_TOL
    assert got["t1_vs_training_loss"] <= 1e-6


def test_seeded_sampling_is_reproducible_and_batch_independent(tp1):
    sampled = tp1["sampled"]
    tokens = {run: {rid: v["tokens"] for rid, v in answers.items()}
              for run, answers in sampled.items()}
    assert sampled["a"] == sampled["b"]  # same seed: same tokens and log-probs
    assert tokens["reordered"] == tokens["a"]  # other batch order and size: same draws
    assert all(tokens["other_seed"][rid] != tokens["a"][rid] for rid in tokens["a"])
    for answer in sampled["a"].values():
        assert len(answer["tokens"]) == MAX_NEW and all(lp < 0 for lp in answer["logprobs"])


def test_generation_stops_on_an_end_id(tp1):
    stopped = tp1["stopped"]
    assert stopped["finish"] == "stop"
    first_case = next(iter(tp1["greedy"].values()))
    k = first_case.index(stopped["tokens"][-1])
    assert stopped["tokens"] == first_case[:k + 1]
    assert stopped["text"] == stopped["want_text"]  # the end token is not in the text


def test_cli_generate_pipeline_parallel(tiny, reference, tmp_path):
    """`fleming generate --hf --pp 2` (ranks spawned by the CLI): prompt and input_ids requests,
    answers in input order, bad requests answered with their error and exit status 1."""
    folder, cases = tiny
    encoder = encoder_for(folder)
    expanded = encoder.prepare(Request(id="x", prompt=cases[0]["prompt"],
                                       images=tuple(Path(i) for i in cases[0]["images"])))
    lines = [json.dumps(c) for c in cases]
    lines.append(json.dumps({"id": "as_ids", "input_ids": expanded.input_ids,
                             "images": cases[0]["images"]}))
    lines.append(json.dumps({"id": "missing", "prompt": "<image>", "images": ["nope.png"]}))
    lines.append("{not json")
    lines.append(json.dumps({"id": "short", "input_ids": [7, 8, 9], "images": cases[0]["images"]}))
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(lines) + "\n")
    answers = tmp_path / "answers.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore", "CUDA_VISIBLE_DEVICES": ""}
    for key in ("WORLD_SIZE", "MASTER_ADDR", "RANK"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "megatron_fleming.cli", "generate", "--hf", str(folder),
         "--input", str(requests), "--output", str(answers), "--pp", "2", "--max-tiles", "6",
         "--max-new-tokens", str(MAX_NEW), "--ignore-eos", "--no-system-prompt"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert "8 answers" in proc.stdout and "(3 errors)" in proc.stdout
    got = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [a["id"] for a in got] == [c["id"] for c in cases] + ["as_ids", "missing", None, "short"]
    for case, answer in zip(cases, got):
        assert answer["token_ids"] == reference[case["id"]], case["id"]
        assert len(answer["logprobs"]) == MAX_NEW and answer["finish_reason"] == "length"
    assert got[4]["token_ids"] == reference["one_tile"]
    assert "nope.png" in got[5]["error"]
    assert f"{requests}:7" in got[6]["error"]
    assert "0 <IMG_CONTEXT> tokens" in got[7]["error"] and "'short'" in got[7]["error"]
