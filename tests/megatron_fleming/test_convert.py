"""Checkpoint conversion: both Hugging Face layouts <-> Megatron dist-checkpoints, on CPU.

Tiny random InternVL models are built with transformers' own classes (2 ViT + 2 Qwen2 layers,
GQA, QKV bias, every weight drawn at random so that each one moves the logits) with an odd
vocabulary (301 tokens), which Megatron's rule pads to a multiple of 128 x TP. The original
InternVL release layout is written here from the transformers model by the inverse of
transformers' `convert_internvl_weights_to_hf.py` renaming, independently of the code under test.
Conversions run through the `fleming` CLI in subprocesses (real megatron-core on gloo).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLVisionConfig, Qwen2Config

from megatron_fleming.convert.hf_checkpoint import read_hf_checkpoint, write_hf_checkpoint
from megatron_fleming.convert.hf_layouts import HFLayout
from megatron_fleming.convert.tensors import DictSource, MappedSource, materialize
from megatron_fleming.convert.verify import verification_batch
from hf_internvl import random_model  # noqa: E402  (tests/megatron_fleming/hf_internvl.py)

REPO = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).resolve().parent / "convert_workers"
IMAGE_TOKEN = 299
VOCAB = 301  # odd: no TP divides it, so conversion must pad it
TIMEOUT = 420


def tiny_config(*, tied: bool, qkv_bias: bool = True) -> InternVLConfig:
    vision = InternVLVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, image_size=56, patch_size=14,
                                  attention_bias=qkv_bias, norm_type="layer_norm")
    text = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4,
                       intermediate_size=96, vocab_size=VOCAB, max_position_embeddings=256,
                       rope_theta=1e6, tie_word_embeddings=tied)
    return InternVLConfig(vision_config=vision, text_config=text, image_token_id=IMAGE_TOKEN,
                          image_seq_length=4, tie_word_embeddings=tied)


# The inverse of transformers' ORIGINAL_TO_CONVERTED_KEY_MAPPING_{VISION,MULTI}; Qwen2 keys are
# the same in both layouts. q/k/v_proj are concatenated into InternViT's attn.qkv.
TO_ORIGINAL = [
    (r"^vision_tower\.", "vision_model."),
    (r"\.encoder\.layer\.", ".encoder.layers."),
    (r"embeddings\.cls_token", "embeddings.class_embedding"),
    (r"embeddings\.position_embeddings", "embeddings.position_embedding"),
    (r"embeddings\.patch_embeddings\.projection", "embeddings.patch_embedding"),
    (r"lambda_(\d)", r"ls\1"),
    (r"attention\.projection_layer", "attn.proj"),
    (r"\.attention\.", ".attn."),
    (r"layernorm_before", "norm1"),
    (r"layernorm_after", "norm2"),
    (r"^multi_modal_projector\.layer_norm", "mlp1.0"),
    (r"^multi_modal_projector\.linear_1", "mlp1.1"),
    (r"^multi_modal_projector\.linear_2", "mlp1.3"),
]


def to_original_tensors(native: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in native.items():
        if re.search(r"attention\.[kv]_proj", key):
            continue
        if m := re.search(r"attention\.q_proj\.(weight|bias)$", key):
            base = key[:m.start()]
            tensor = torch.cat([native[f"{base}attention.{n}_proj.{m[1]}"] for n in "qkv"])
            key = f"{base}attention.qkv.{m[1]}"
        for pattern, repl in TO_ORIGINAL:
            key = re.sub(pattern, repl, key)
        out[key] = tensor
    return out


def original_config(cfg: InternVLConfig) -> dict:
    """config.json as InternVL3-8B's (InternVLChatConfig), for the tiny shapes."""
    v, t = cfg.vision_config, cfg.text_config
    return {
        "architectures": ["InternVLChatModel"], "model_type": "internvl_chat",
        "downsample_ratio": 0.5, "dynamic_image_size": True, "force_image_size": v.image_size[0],
        "max_dynamic_patch": 12, "min_dynamic_patch": 1, "ps_version": "v2", "select_layer": -1,
        "template": "internvl2_5", "use_thumbnail": True, "use_backbone_lora": 0, "use_llm_lora": 0,
        "pad2square": False, "tie_word_embeddings": cfg.tie_word_embeddings, "torch_dtype": "float32",
        "llm_config": {
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
            "hidden_size": t.hidden_size, "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers, "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads, "vocab_size": t.vocab_size,
            "max_position_embeddings": t.max_position_embeddings, "rms_norm_eps": t.rms_norm_eps,
            "rope_theta": 1e6, "rope_scaling": {"factor": 2.0, "rope_type": "dynamic", "type": "dynamic"},
            "tie_word_embeddings": cfg.tie_word_embeddings, "use_sliding_window": False,
            "torch_dtype": "bfloat16",
        },
        "vision_config": {
            "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b",
            "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
            "num_hidden_layers": v.num_hidden_layers, "num_attention_heads": v.num_attention_heads,
            "image_size": v.image_size[0], "patch_size": v.patch_size[0], "num_channels": 3,
            "qkv_bias": v.attention_bias, "qk_normalization": False, "norm_type": "layer_norm",
            "layer_norm_eps": 1e-6, "hidden_act": "gelu", "initializer_factor": 0.1,
            "drop_path_rate": 0.0, "dropout": 0.0, "attention_dropout": 0.0, "use_flash_attn": True,
        },
    }


def write_original(folder: Path, native_folder: Path, cfg: InternVLConfig) -> None:
    folder.mkdir(parents=True)
    save_file(to_original_tensors(load_file(native_folder / "model.safetensors")),
              folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(original_config(cfg), indent=2))
    # The release keeps <IMG_CONTEXT>'s id in its tokenizer files, not in config.json.
    (folder / "added_tokens.json").write_text(json.dumps({"<img>": 297, "</img>": 298,
                                                           "<IMG_CONTEXT>": IMAGE_TOKEN}))


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    """`native`: untied, transformers layout. `tied_native` and its `original` rewrite: tied."""
    root = tmp_path_factory.mktemp("hf")
    random_model(tiny_config(tied=False), seed=1).save_pretrained(root / "native")
    random_model(tiny_config(tied=True), seed=2).save_pretrained(root / "tied_native")
    write_original(root / "original", root / "tied_native", tiny_config(tied=True))
    return {name: root / name for name in ("native", "tied_native", "original")}


def tensors_of(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------- Hugging Face side, in process

def test_original_layout_reads_as_transformers_names(hf_dirs):
    original = read_hf_checkpoint(hf_dirs["original"])
    native = read_hf_checkpoint(hf_dirs["tied_native"])
    assert original.layout is HFLayout.INTERNVL and native.layout is HFLayout.TRANSFORMERS
    assert_same_tensors(materialize(original.tensors), tensors_of(hf_dirs["tied_native"]))
    assert original.config.image_token_id == IMAGE_TOKEN  # from added_tokens.json
    for section in ("vision_config", "text_config"):
        want, got = getattr(native.config, section).to_dict(), getattr(original.config, section).to_dict()
        for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                      "attention_bias", "num_key_value_heads", "vocab_size", "image_size", "patch_size"):
            assert got.get(field) == want.get(field), (section, field)
    assert original.config.tie_word_embeddings is True


def test_writers_follow_the_documented_renaming(hf_dirs, tmp_path):
    native = read_hf_checkpoint(hf_dirs["native"])
    write_hf_checkpoint(tmp_path / "original", native.config, native.tensors, HFLayout.INTERNVL)
    assert_same_tensors(tensors_of(tmp_path / "original"), to_original_tensors(tensors_of(hf_dirs["native"])))
    written = json.loads((tmp_path / "original" / "config.json").read_text())
    assert written["model_type"] == "internvl_chat" and written["ps_version"] == "v2"
    assert written["llm_config"]["rope_theta"] == 1e6

    back = read_hf_checkpoint(tmp_path / "original")
    write_hf_checkpoint(tmp_path / "native", back.config, back.tensors, HFLayout.TRANSFORMERS)
    reloaded = InternVLForConditionalGeneration.from_pretrained(tmp_path / "native")
    source = InternVLForConditionalGeneration.from_pretrained(hf_dirs["native"])
    assert_same_tensors(reloaded.state_dict(), source.state_dict())


def test_megatron_mapping_fuses_qkv_per_query_group(hf_dirs):
    from megatron_fleming.convert.mcore_mapping import hf_to_mcore, mcore_to_hf
    from megatron_fleming.model.config import VLMConfig

    ck = read_hf_checkpoint(hf_dirs["native"])
    cfg = VLMConfig.from_hf(ck.config)
    hf = materialize(ck.tensors)
    mc = materialize(MappedSource(DictSource(hf), hf_to_mcore(cfg)))
    d, per_group = 8, 2  # head dim, query heads per KV group (8 heads, 4 groups; TP 4 divides)
    p = "language_model.model.layers.1.self_attn."
    qkv = mc["language_model.decoder.layers.1.self_attention.linear_qkv.weight"]
    for g in range(2):
        block = qkv[g * (per_group + 2) * d:(g + 1) * (per_group + 2) * d]
        q_heads = hf[p + "q_proj.weight"][g * per_group * d:(g + 1) * per_group * d]
        assert torch.equal(block[:per_group * d], q_heads)
        assert torch.equal(block[per_group * d:(per_group + 1) * d], hf[p + "k_proj.weight"][g * d:(g + 1) * d])
        assert torch.equal(block[(per_group + 1) * d:], hf[p + "v_proj.weight"][g * d:(g + 1) * d])
    vis = mc["vision_model.decoder.layers.0.self_attention.linear_qkv.bias"]
    vp = "vision_tower.encoder.layer.0.attention."
    assert torch.equal(vis[3 * 8:4 * 8], hf[vp + "q_proj.bias"][8:16])  # head 1: [q1, k1, v1]
    assert torch.equal(vis[5 * 8:6 * 8], hf[vp + "v_proj.bias"][8:16])
    fc1 = mc["language_model.decoder.layers.0.mlp.linear_fc1.weight"]
    gate_up = [hf[f"language_model.model.layers.0.mlp.{n}_proj.weight"] for n in ("gate", "up")]
    assert torch.equal(fc1, torch.cat(gate_up))
    assert_same_tensors(materialize(MappedSource(DictSource(mc), mcore_to_hf(cfg))), hf)


def test_megatron_mapping_pads_the_vocabulary_with_zero_rows_and_strips_them(hf_dirs):
    from megatron_fleming.convert.mcore_mapping import MCORE_EMBED, MCORE_OUTPUT, hf_to_mcore, mcore_to_hf
    from megatron_fleming.model.config import VLMConfig

    ck = read_hf_checkpoint(hf_dirs["native"])
    cfg = VLMConfig.from_hf(ck.config, vocab_pad_multiple=128 * 4)  # Megatron's rule at TP4
    hf = materialize(ck.tensors)
    mc = materialize(MappedSource(DictSource(hf), hf_to_mcore(cfg)))
    for name, source in ((MCORE_EMBED, "language_model.model.embed_tokens.weight"),
                         (MCORE_OUTPUT, "language_model.lm_head.weight")):
        assert mc[name].shape == (512, 64)
        assert torch.equal(mc[name][:VOCAB], hf[source]) and not mc[name][VOCAB:].any()
    assert_same_tensors(materialize(MappedSource(DictSource(mc), mcore_to_hf(cfg))), hf)


def test_megatron_mapping_pads_vision_heads_with_zeros(tmp_path):
    from megatron_fleming.convert.mcore_mapping import hf_to_mcore, mcore_to_hf
    from megatron_fleming.model.config import VLMConfig

    model = random_model(tiny_config(tied=False, qkv_bias=False), seed=3)
    model.save_pretrained(tmp_path)
    ck = read_hf_checkpoint(tmp_path)
    cfg = VLMConfig.from_hf(ck.config, num_padded_heads=6)  # 4 real heads + 2 zero heads
    hf = materialize(ck.tensors)
    mc = materialize(MappedSource(DictSource(hf), hf_to_mcore(cfg)))
    qkv = mc["vision_model.decoder.layers.1.self_attention.linear_qkv.weight"]
    proj = mc["vision_model.decoder.layers.1.self_attention.linear_proj.weight"]
    assert qkv.shape == (3 * 6 * 8, 32) and proj.shape == (32, 6 * 8)
    assert not qkv[4 * 24:].any() and not proj[:, 32:].any() and qkv[:4 * 24].abs().min() > 0
    assert_same_tensors(materialize(MappedSource(DictSource(mc), mcore_to_hf(cfg))), hf)


# ------------------------------------------------------- Megatron side, real megatron-core on gloo

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("WORLD_SIZE", None)
    env.pop("MASTER_ADDR", None)
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, (f"{' '.join(cmd)}\nstdout:\n{proc.stdout[-3000:]}\n"
                                  f"stderr:\n{proc.stderr[-6000:]}")
    return proc


def fleming(*args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "megatron_fleming.cli", *args])


@pytest.fixture(scope="module")
def converted(hf_dirs, tmp_path_factory) -> dict[str, Path]:
    """Both Hugging Face folders converted at TP=2; the original one with --verify."""
    root = tmp_path_factory.mktemp("mcore")
    verify = fleming("convert", "hf-to-mcore", "--hf", str(hf_dirs["original"]),
                     "--out", str(root / "original"), "--tp", "2", "--verify")
    fleming("convert", "hf-to-mcore", "--hf", str(hf_dirs["native"]), "--out", str(root / "native"),
            "--tp", "2")
    return {"original": root / "original", "native": root / "native", "verify_stdout": verify.stdout}


def test_cli_verify_prints_logits_difference_last(converted):
    last = converted["verify_stdout"].strip().splitlines()[-1]
    match = re.fullmatch(r"max_abs_logits_diff=(\S+)", last)
    assert match, last
    assert float(match[1]) <= 1e-4
    record = json.loads((converted["original"] / "fleming_hf.json").read_text())
    language = record["vlm_config"]["language"]  # the odd vocabulary, padded as Megatron does
    assert language["vocab_size"] == VOCAB and language["vocab_pad_multiple"] == 128 * 2


def test_parity_with_transformers_forward(hf_dirs, converted, tmp_path):
    """Megatron logits (TP=2 checkpoint, 512 vocabulary rows, loaded at TP=4, V2PE delta=1) =
    transformers' logits over the 301 real tokens; the 211 padding rows never win and are never
    scored: their logits are the dtype's minimum on the ranks holding them, and the per-token
    loss equals cross-entropy over the real vocabulary."""
    reference_model = InternVLForConditionalGeneration.from_pretrained(hf_dirs["native"]).eval()
    record = json.loads((converted["native"] / "fleming_hf.json").read_text())
    from megatron_fleming.model.config import VLMConfig

    batch = verification_batch(VLMConfig.from_dict(record["vlm_config"]), tiles=3)
    assert batch.pixel_values.shape[0] == 3  # 2 tiles + thumbnail
    torch.save({"input_ids": batch.input_ids, "pixel_values": batch.pixel_values}, tmp_path / "batch.pt")
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "4",
          "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
          str(WORKERS / "megatron_logits.py"), "--mcore", str(converted["native"]),
          "--batch", str(tmp_path / "batch.pt"), "--out", str(tmp_path / "logits.pt"), "--tp", "4"])
    result = torch.load(tmp_path / "logits.pt")
    assert result["v2pe_delta"] == 1.0 and result["padded_vocab_size"] == 512
    with torch.no_grad():
        reference = reference_model(input_ids=batch.input_ids, pixel_values=batch.pixel_values).logits
    assert reference.std() > 0.5  # random weights that matter, not near-zero logits
    image_rows = batch.input_ids[0] == IMAGE_TOKEN
    assert image_rows.sum() == 12
    logits = result["logits"]
    assert logits.shape[-1] == 512
    diff = (logits[..., :VOCAB] - reference).abs().max()
    assert diff <= 1e-4, diff
    assert (logits[..., VOCAB:] == torch.finfo(logits.dtype).min).all()
    # Each TP rank holds 128 columns; ranks 2 and 3 hold padding (from column 301 on).
    local = result["local_logits"]
    assert [t.shape[-1] for t in local] == [128] * 4
    assert torch.equal(torch.cat(local, dim=-1), logits)
    labels = torch.roll(batch.input_ids, -1, dims=1)[0, :-1]
    want = torch.nn.functional.cross_entropy(reference[0, :-1], labels, reduction="none")
    torch.testing.assert_close(result["losses"][0, :-1], want, rtol=0, atol=1e-4)
    assert result["losses"][0, -1] == 0


def test_round_trip_original_layout(hf_dirs, converted, tmp_path):
    fleming("convert", "mcore-to-hf", "--mcore", str(converted["original"]), "--out", str(tmp_path))
    assert_same_tensors(tensors_of(tmp_path), tensors_of(hf_dirs["original"]))
    assert json.loads((tmp_path / "config.json").read_text()) == original_config(tiny_config(tied=True))
    tokens = "added_tokens.json"  # assets travel inside the Megatron checkpoint
    assert (tmp_path / tokens).read_bytes() == (hf_dirs["original"] / tokens).read_bytes()


def test_round_trip_transformers_layout_and_cross_layout(hf_dirs, converted, tmp_path):
    fleming("convert", "mcore-to-hf", "--mcore", str(converted["native"]), "--out", str(tmp_path / "same"))
    assert_same_tensors(tensors_of(tmp_path / "same"), tensors_of(hf_dirs["native"]))
    assert (json.loads((tmp_path / "same" / "config.json").read_text())
            == json.loads((hf_dirs["native"] / "config.json").read_text()))
    fleming("convert", "mcore-to-hf", "--mcore", str(converted["native"]), "--out", str(tmp_path / "cross"),
            "--layout", "internvl")
    assert_same_tensors(tensors_of(tmp_path / "cross"), to_original_tensors(tensors_of(hf_dirs["native"])))


def test_training_from_a_conversion_needs_its_padded_vocabulary(converted):
    """`checkpoint.init_from` a converted folder: a run whose model pads the vocabulary
    differently is refused, naming the setting (the rows are part of the weights' shape)."""
    import dataclasses

    from megatron_fleming.model.config import VLMConfig
    from megatron_fleming.train.checkpoint import check_vocabulary

    saved = VLMConfig.from_dict(json.loads((converted["native"] / "fleming_hf.json").read_text())
                                ["vlm_config"])
    check_vocabulary(converted["native"], saved)
    other = dataclasses.replace(saved, language=dataclasses.replace(saved.language,
                                                                    vocab_pad_multiple=128))
    with pytest.raises(ValueError, match="vocab_pad_multiple: 256"):
        check_vocabulary(converted["native"], other)
