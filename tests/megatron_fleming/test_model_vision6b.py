"""InternViT-6B's layout against transformers' own InternVL vision model, at TP1 and TP2.

A tiny random 6B-style model (RMSNorm, QK-norm across all heads, no QKV bias, 3 heads) is built
with transformers' classes; its weights go through the conversion mapping into megatron-core's
InternViT, which pads the heads to 4 with zero heads so that TP 2 splits them (rank 1 then holds
one real and one zero head, and the QK-norm's mean square spans both ranks). The ViT's patch
features and the projected image features must equal transformers' on the same tiles.
"""

from __future__ import annotations

import pytest
import torch

from hf_internvl import internvit6b_style_config, random_model  # tests/megatron_fleming/

# fp32, different matmul and reduction orders over 2 layers: ~1e-6 measured.
ATOL = 1e-4


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("vit6b")
    model = random_model(internvit6b_style_config(), seed=11)
    model.save_pretrained(root / "hf")
    pixels = torch.randn(3, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    torch.save(pixels, root / "pixels.pt")
    with torch.no_grad():
        patches = model.model.vision_tower(pixel_values=pixels).last_hidden_state[:, 1:]
        features = model.model.get_image_features(pixel_values=pixels, vision_feature_layer=-1,
                                                  vision_feature_select_strategy="default")
    return root, patches, features.pooler_output  # [tiles, 4 tokens, language hidden]


def test_internvit6b_matches_transformers_at_tp1_and_tp2(torchrun, reference):
    """One 2-rank launch: TP2 with the heads padded to 4, then TP1 with the 3 real heads (DP2)."""
    root, patches, features = reference
    meta = torchrun("vision_parity_worker.py", 2, [
        "--hf", str(root / "hf"), "--pixels", str(root / "pixels.pt"), "--layouts", "2:4", "1:0"])
    assert all(meta[tp]["qk_norm"] and meta[tp]["norm"] == "rmsnorm" for tp in ("tp1", "tp2"))
    assert (meta["tp2"]["heads"], meta["tp2"]["local_heads"]) == (4, 2)
    assert (meta["tp1"]["heads"], meta["tp1"]["local_heads"]) == (3, 3)
    got = torch.load(meta["tensors"])
    assert patches.abs().mean() > 0.1  # random weights that matter
    for tp in ("tp1", "tp2"):
        torch.testing.assert_close(got[tp]["patches"], patches, rtol=0, atol=ATOL)
        torch.testing.assert_close(got[tp]["features"], features, rtol=0, atol=ATOL)
