"""Generation pieces that need no model: sampling, the log-prob convention, V2PE continuation,
request files and prompt encoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from megatron_fleming.data.tokenizer import IM_START, train_tiny_tokenizer
from megatron_fleming.generate.inputs import RequestEncoder
from megatron_fleming.generate.requests import Request, RequestError, read_requests
from megatron_fleming.generate.sampling import SamplingParams, TokenMask, request_seed, sample
from megatron_fleming.model.presets import load_preset
from megatron_fleming.model.v2pe import v2pe_position_ids

MASK = TokenMask(vocab_size=10, never_sampled=(3,))  # 12 logit rows: 10 and 11 are padding


def logits_with_banned_on_top(rows: int = 1) -> torch.Tensor:
    logits = torch.linspace(0, 1, 12).repeat(rows, 1)
    logits[:, 3] = logits[:, 10] = logits[:, 11] = 50.0
    return logits


def draws(params: SamplingParams, logits: torch.Tensor, n: int) -> list[int]:
    gens = [torch.Generator().manual_seed(s) for s in range(n)]
    return [int(sample(logits, MASK, [params], [g])[0]) for g in gens]


def test_padding_and_image_context_are_never_sampled():
    logits = logits_with_banned_on_top()
    assert int(sample(logits, MASK, [SamplingParams()], [None])[0]) == 9  # greedy
    picked = draws(SamplingParams(temperature=5.0), logits, 300)
    assert not {3, 10, 11} & set(picked) and len(set(picked)) == 9


def test_top_k_and_top_p_keep_exactly_the_head():
    probs = torch.tensor([0.4, 0.3, 0.2, 0.06, 0.04])
    mask = TokenMask(vocab_size=5, never_sampled=())
    logits = probs.log()[None]
    gens = [torch.Generator().manual_seed(s) for s in range(400)]

    def support(params):
        return {int(sample(logits, mask, [params], [g])[0]) for g in gens}

    assert support(SamplingParams(temperature=1.0, top_k=2)) == {0, 1}
    assert support(SamplingParams(temperature=1.0, top_p=0.75)) == {0, 1, 2}  # 0.4 + 0.3 < 0.75
    assert support(SamplingParams(temperature=1.0, top_p=0.7)) == {0, 1}
    assert support(SamplingParams(temperature=1.0, top_p=0.01)) == {0}
    assert support(SamplingParams(temperature=1.0)) == {0, 1, 2, 3, 4}


def test_logprob_is_of_the_tempered_unfiltered_distribution():
    logits = torch.randn(3, 12, generator=torch.Generator().manual_seed(0))
    params = [SamplingParams(temperature=0.7, top_k=3), SamplingParams(),
              SamplingParams(temperature=1.3, top_p=0.5)]
    gens = [torch.Generator().manual_seed(1), None, torch.Generator().manual_seed(2)]
    tokens, logprobs = sample(logits, MASK, params, gens)
    real = logits[:, :10]  # padding rows out; <IMG_CONTEXT> (3) stays in the normaliser
    for row, t in enumerate([0.7, 1.0, 1.3]):
        want = torch.log_softmax(real[row] / t, -1)[tokens[row]]
        assert float(logprobs[row]) == pytest.approx(float(want), abs=1e-6)


def test_a_rows_draw_depends_only_on_its_generator():
    logits = torch.randn(4, 12, generator=torch.Generator().manual_seed(4))
    hot = SamplingParams(temperature=1.0)
    alone = [int(sample(logits[i:i + 1], MASK, [hot], [torch.Generator().manual_seed(9)])[0])
             for i in range(4)]
    mixed = [hot, SamplingParams(), SamplingParams(temperature=0.5, top_k=2), hot]
    gens = [torch.Generator().manual_seed(9) if not p.greedy else None for p in mixed]
    together = sample(logits, MASK, mixed, gens)[0].tolist()
    assert together[0] == alone[0] and together[3] == alone[3]
    assert request_seed(0, "q1") == request_seed(0, "q1") != request_seed(1, "q1")


@pytest.mark.parametrize("delta", [1.0, 0.5, 0.25, 1 / 3])
def test_generated_positions_continue_as_training_places_the_finished_sequence(delta):
    """The engine computes positions on prompt + placeholder slots; training computes them on
    the finished sequence. Generated tokens are never <IMG_CONTEXT>, so both agree."""
    ctx, gen = 5, torch.Generator().manual_seed(7)
    for prompt_tail_is_image in (False, True):
        prompt = torch.randint(6, 90, (40,), generator=gen)
        prompt[10:22] = ctx
        if prompt_tail_is_image:
            prompt[-7:] = ctx
        generated = torch.randint(6, 90, (16,), generator=gen)
        buffer = torch.cat([prompt, torch.zeros(16, dtype=torch.long)])[None]
        finished = torch.cat([prompt, generated])[None]
        at_generation = v2pe_position_ids(buffer, ctx, delta)
        assert torch.equal(at_generation, v2pe_position_ids(finished, ctx, delta))
        last = float(at_generation[0, 39])
        assert float(at_generation[0, 40]) == np.ceil(last) + 1


def test_request_file_errors_name_the_line_and_keep_the_others(tmp_path):
    lines = [{"id": "ok", "prompt": "hi", "images": ["a.png"], "temperature": 0.5},
             {"prompt": "no id"},
             {"id": "k", "prompt": "x", "colour": "red"},
             {"id": "both", "prompt": "x", "input_ids": [1]},
             {"id": "t", "prompt": "x", "temperature": -1},
             {"id": "n", "prompt": "x", "max_new_tokens": 2.5}]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\nnot json\n")
    items = list(read_requests(path, SamplingParams(max_new_tokens=7)))
    ok = items[0]
    assert isinstance(ok, Request) and ok.images == (tmp_path / "a.png",)
    assert ok.sampling == SamplingParams(temperature=0.5, max_new_tokens=7)
    errors = items[1:]
    assert all(isinstance(e, RequestError) for e in errors)
    assert [e.request_id for e in errors] == [None, "k", "both", "t", "n", None]
    assert f"{path}:2" in str(errors[0]) and "no 'id'" in str(errors[0])
    assert "colour" in str(errors[1])
    assert "exactly one of 'prompt' and 'input_ids'" in str(errors[2])
    assert "temperature" in str(errors[3])
    assert "max_new_tokens must be integers" in str(errors[4])
    assert f"{path}:8" in str(errors[5])


@pytest.fixture(scope="module")
def encoder() -> RequestEncoder:
    tokenizer = train_tiny_tokenizer(["What is shown? user assistant system Describe."] * 4,
                                     vocab_size=120)
    cfg = load_preset("tiny", image_context_token_id=tokenizer.image_context_id)
    return RequestEncoder(cfg, tokenizer, max_tiles=4, system_prompt="Be brief.")


def test_prompt_becomes_the_training_layout_up_to_the_assistant_header(encoder, tmp_path):
    Image.new("RGB", (112, 56), "gray").save(tmp_path / "wide.png")
    p = encoder.prepare(Request(id="q", prompt="What is shown?", images=(tmp_path / "wide.png",)))
    tok = encoder.tokenizer
    header = [tok.token_id(IM_START)] + tok.encode("assistant\n")
    assert p.input_ids[-len(header):] == header
    assert p.pixel_values.shape == (3, 3, 56, 56)  # 2 x 1 + thumbnail
    assert p.input_ids.count(encoder.image_context_id) == 3 * encoder.tokens_per_tile
    text = tok.decode(p.input_ids)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<img>")
    assert "</img>\nWhat is shown?<|im_end|>\n<|im_start|>assistant\n" in text


def test_input_ids_must_hold_the_image_tokens_of_their_tiles(encoder, tmp_path):
    Image.new("RGB", (56, 56), "gray").save(tmp_path / "sq.png")
    ok = encoder.prepare(Request(id="q", prompt="x", images=(tmp_path / "sq.png",)))
    again = encoder.prepare(Request(id="ids", input_ids=tuple(ok.input_ids),
                                    images=(tmp_path / "sq.png",)))
    assert again.input_ids == ok.input_ids and torch.equal(again.pixel_values, ok.pixel_values)
    with pytest.raises(RequestError, match="'short'.*0 <IMG_CONTEXT>"):
        encoder.prepare(Request(id="short", input_ids=(1, 2), images=(tmp_path / "sq.png",)))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(RequestError, match="'broken'"):
        encoder.prepare(Request(id="broken", prompt="x", images=(tmp_path / "bad.png",)))


def test_history_renders_earlier_turns_with_the_images_in_the_first(encoder, tmp_path):
    Image.new("RGB", (56, 56), "gray").save(tmp_path / "sq.png")
    p = encoder.prepare(Request(id="t2", prompt="And now?", images=(tmp_path / "sq.png",),
                                history=(("What is shown?", "A mass."),), system="S."))
    text = encoder.tokenizer.decode(p.input_ids)
    image = "<img>" + "<IMG_CONTEXT>" * encoder.tokens_per_tile + "</img>"
    assert text == ("<|im_start|>system\nS.<|im_end|>\n"
                    f"<|im_start|>user\n{image}\nWhat is shown?<|im_end|>\n"
                    "<|im_start|>assistant\nA mass.<|im_end|>\n"
                    "<|im_start|>user\nAnd now?<|im_end|>\n<|im_start|>assistant\n")
