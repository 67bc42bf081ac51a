"""Packing: a packed row with cu_seqlens gives every token the same loss as the unpacked batch.

The model is a tiny causal transformer layer written here: image tiles are pooled into the
<IMG_CONTEXT> slots in order, RoPE takes the fp32 V2PE positions as they are, and attention is
block-diagonal by cu_seqlens. Packed == unpacked then holds only if positions restart per
sequence, boundaries are respected and tiles stay in token order; the test also shows that
breaking either of the first two changes the losses.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from datakit.energon_format import FlemingVQASample
from megatron_fleming.data.packing import first_fit_decreasing
from megatron_fleming.data.task_encoder import FlemingTaskEncoder, TaskEncoderConfig
from megatron_fleming.data.tiling import TilingConfig
from megatron_fleming.data.tokenizer import train_tiny_tokenizer
from megatron_fleming.model.pixels import normalize_pixels

TILE = 32  # tiny tiles keep the test fast; the layout logic does not depend on the size
TOKENS_PER_TILE = 4  # a 2x2 pooled grid per tile


def _png(w: int, h: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _sample(key: str, images: list[bytes], question: str, answer: str) -> FlemingVQASample:
    conv = [{"from": "human", "value": "<image>\n" * len(images) + question},
            {"from": "gpt", "value": answer}]
    return FlemingVQASample(__key__=key, __restore_key__=(), images=images, conversation=conv,
                            meta={"modality": "ultrasound"})


SAMPLES = [
    _sample("wide", [_png(64, 32, 0)], "Where is the lesion?", "Upper left, near the skin."),
    _sample("square", [_png(32, 32, 1)], "Is there a lesion?", "No."),
    _sample("text", [], "What is BI-RADS?", "A breast imaging reporting system."),
    _sample("two", [_png(32, 64, 2), _png(40, 30, 3)], "Compare the two.", "The second is larger."),
]


@pytest.fixture(scope="module")
def tok():
    texts = [t["value"] for s in SAMPLES for t in s.conversation]
    return train_tiny_tokenizer(texts + ["user assistant system"], vocab_size=300)


def _encoder(tok, layout: str) -> FlemingTaskEncoder:
    cfg = TaskEncoderConfig(tiling=TilingConfig(image_size=TILE, max_tiles=4),
                            tokens_per_tile=TOKENS_PER_TILE, v2pe_delta=0.25, system_prompt="Be brief.",
                            layout=layout, pad_to_multiple_of=8, max_seq_len=512)
    return FlemingTaskEncoder(tok, cfg)


def _encoded(te: FlemingTaskEncoder):
    return [te.postencode_sample(te.preencode_sample(s)) for s in SAMPLES]


class TinyVLM(torch.nn.Module):
    """One attention layer with RoPE on fp32 positions and pooled-tile image embeddings."""

    def __init__(self, vocab: int, image_context_id: int, d: int = 32) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = torch.nn.Parameter(torch.randn(vocab, d, generator=g))
        self.vis = torch.nn.Parameter(torch.randn(3, d, generator=g))
        self.qkv = torch.nn.Parameter(torch.randn(d, 3 * d, generator=g) / d ** 0.5)
        self.head = torch.nn.Parameter(torch.randn(d, vocab, generator=g) / d ** 0.5)
        self.ctx, self.d = image_context_id, d

    def rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        half = self.d // 2
        freq = 1.0 / (100.0 ** (torch.arange(half, dtype=torch.float32) / half))
        angle = pos[..., None] * freq
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * angle.cos() - x2 * angle.sin(), x1 * angle.sin() + x2 * angle.cos()], -1)

    def forward(self, input_ids, positions, pixel_values, allowed) -> torch.Tensor:
        x = self.emb[input_ids].clone()
        pixels = normalize_pixels(pixel_values)  # uint8 tiles, normalised as the model does
        pooled = F.adaptive_avg_pool2d(pixels, 2).flatten(2).transpose(1, 2)  # [tiles, 4, 3]
        x[input_ids == self.ctx] = pooled.reshape(-1, 3) @ self.vis
        q, k, v = (x @ self.qkv).chunk(3, -1)
        q, k = self.rope(q, positions), self.rope(k, positions)
        scores = (q @ k.transpose(-1, -2)) / self.d ** 0.5
        att = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        return (x + att @ v) @ self.head


def _causal(t: int) -> torch.Tensor:
    return torch.ones(t, t, dtype=torch.bool).tril()


def _block_causal(cu_seqlens: torch.Tensor, t: int) -> torch.Tensor:
    seg = torch.full((t,), -1)
    for i, (a, b) in enumerate(zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist())):
        seg[a:b] = i
    seg[cu_seqlens[-1]:] = len(cu_seqlens)  # trailing padding: its own block
    return (seg[:, None] == seg[None, :]) & _causal(t)


def _token_losses(model, batch, allowed, positions=None) -> torch.Tensor:
    """Per-token losses of the tokens that carry loss, in row-major order."""
    pos = batch.position_ids if positions is None else positions
    logits = model(batch.input_ids, pos, batch.pixel_values, allowed)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), reduction="none", ignore_index=-100)
    return loss[batch.loss_mask.flatten().bool()]


def test_packed_equals_unpacked_per_token_loss(tok):
    packed_te, padded_te = _encoder(tok, "packed"), _encoder(tok, "padded")
    packed = packed_te.batch([packed_te.pack_selected_samples(_encoded(packed_te))])
    padded = padded_te.batch(_encoded(padded_te))
    assert packed.input_ids.shape[0] == 1 and padded.input_ids.shape[0] == len(SAMPLES)
    assert packed.input_ids.shape[1] % 8 == 0 and padded.input_ids.shape[1] % 8 == 0
    assert torch.equal(packed.pixel_values, padded.pixel_values)
    model = TinyVLM(tok.vocab_size, tok.image_context_id)
    t = packed.input_ids.shape[1]
    with torch.no_grad():
        got = _token_losses(model, packed, _block_causal(packed.cu_seqlens, t)[None])
        want = _token_losses(model, padded, _causal(padded.input_ids.shape[1])[None])
        assert got.numel() == want.numel() == padded.num_loss_tokens > 0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        # The equality is not vacuous: without restarting positions, or without boundaries, it fails.
        global_pos = torch.arange(t, dtype=torch.float32)[None]
        assert not torch.allclose(_token_losses(model, packed, _block_causal(packed.cu_seqlens, t)[None],
                                                global_pos), want, atol=1e-3)
        assert not torch.allclose(_token_losses(model, packed, _causal(t)[None]), want, atol=1e-3)


def test_packed_row_layout(tok):
    te = _encoder(tok, "packed")
    encoded = _encoded(te)
    batch = te.batch([te.pack_selected_samples(encoded)])
    lens = [len(e) for e in encoded]
    assert batch.cu_seqlens.tolist() == [0, *np.cumsum(lens).tolist()]
    assert batch.cu_seqlens.dtype == torch.int32 and batch.max_seqlen == max(lens)
    assert batch.position_ids.dtype == torch.float32
    for start, end in zip(batch.cu_seqlens[:-1].tolist(), batch.cu_seqlens[1:].tolist()):
        assert batch.position_ids[0, start] == 0  # positions restart at every sequence
        assert batch.labels[0, end - 1] == -100  # no target across a boundary
    ctx = batch.input_ids[0] == tok.image_context_id
    assert int(ctx.sum()) == TOKENS_PER_TILE * batch.pixel_values.shape[0] == TOKENS_PER_TILE * int(batch.num_tiles.sum())
    # 64x32 -> 2x1 + thumbnail; 32x32 -> 1; no image; two images share max_tiles 4 // 2 = 2 each:
    # 32x64 -> 1x2 + thumbnail, 40x30 -> 1 (4/3 is nearer 1 than 2)
    assert batch.num_tiles.tolist() == [3, 1, 3, 1]
    frac = batch.position_ids[0][ctx] % 1
    assert (frac != 0).any()  # delta 0.25: visual tokens sit between integer positions
    tail = batch.cu_seqlens[-1]
    assert (batch.labels[0, tail:] == -100).all() and (batch.input_ids[0, tail:] == tok.pad_id).all()


def test_padded_layout_refuses_packs(tok):
    te = _encoder(tok, "padded")
    with pytest.raises(ValueError, match="packed"):
        te.batch([te.pack_selected_samples(_encoded(te)[:2])])


def test_first_fit_decreasing_by_hand():
    # 5 opens pack A (room 3); 4 opens B (room 4); 3 fills A; 3 goes to B (room 1); 2 opens C;
    # 1 fills B. Packs list their samples in buffer order.
    assert first_fit_decreasing([5, 4, 3, 3, 2, 1], 8) == [[0, 2], [1, 3, 5], [4]]
    # a tile budget splits what tokens alone would join
    assert first_fit_decreasing([2, 2], 8, tiles=[3, 3], max_tiles=4) == [[0], [1]]
    with pytest.raises(ValueError, match="capacity"):
        first_fit_decreasing([9], 8)
