"""ChatML rendering: the token stream equals tokenizing the whole InternVL prompt string, images
expand to 256 <IMG_CONTEXT> per tile, and labels sit on assistant tokens only, token by token."""

from __future__ import annotations

import json

import pytest

from megatron_fleming.data.prompt import (
    IGNORE_INDEX,
    INTERNVL3_SYSTEM_PROMPT,
    PromptError,
    PromptRenderer,
)
from megatron_fleming.data.tiling import TilingConfig, plan_tiles
from megatron_fleming.data.tokenizer import (
    IM_END,
    IM_START,
    IMG_CONTEXT,
    IMG_END,
    IMG_START,
    SPECIAL_TOKENS,
    load_tokenizer,
    train_tiny_tokenizer,
)

CORPUS = [
    "Where is the lesion? The lesion is in the upper left of the image.",
    "Which of the following best describes the finding? A. benign B. malignant C. normal",
    "病灶位于图像的左上方。这是良性病变。",
    INTERNVL3_SYSTEM_PROMPT,
    "user assistant system <think> reasoning </think> <answer> B </answer>",
]
CONVERSATION = [
    {"from": "human", "value": "<image>\nWhere is the lesion?"},
    {"from": "gpt", "value": "The lesion is in the upper left."},
    {"from": "human", "value": "Is it benign? <image> compare with this one."},
    {"from": "gpt", "value": "<think>round, smooth</think><answer>benign</answer>"},
]


@pytest.fixture(scope="module")
def tok():
    return train_tiny_tokenizer(CORPUS, vocab_size=400)


def _full_string(conversation, tiles, tokens_per_tile, system=INTERNVL3_SYSTEM_PROMPT) -> str:
    """The InternVL prompt as one string, written out independently of the renderer."""
    out = f"{IM_START}system\n{system}{IM_END}\n"
    k = 0
    for turn in conversation:
        value = turn["value"]
        if turn["from"] == "human":
            while "<image>" in value:
                value = value.replace("<image>", IMG_START + IMG_CONTEXT * (tiles[k] * tokens_per_tile) + IMG_END, 1)
                k += 1
            out += f"{IM_START}user\n{value}{IM_END}\n"
        else:
            out += f"{IM_START}assistant\n{value}{IM_END}\n"
    return out


def test_tokens_equal_tokenizing_the_whole_prompt(tok):
    r = PromptRenderer(tok, tokens_per_tile=3)
    p = r.render(CONVERSATION, [2, 1])
    assert p.input_ids == tok.encode(_full_string(CONVERSATION, [2, 1], 3))
    assert len(p.labels) == len(p.input_ids)


def test_labels_only_on_assistant_tokens_token_by_token(tok):
    r = PromptRenderer(tok, tokens_per_tile=3)
    p = r.render(CONVERSATION, [2, 1])
    ids = p.input_ids
    im_start, im_end = tok.token_id(IM_START), tok.token_id(IM_END)
    role_len = len(tok.encode("assistant\n"))
    # Walk the turns: an assistant turn's trained span runs from after "<|im_start|>assistant\n"
    # to its <|im_end|> inclusive; the "\n" after it and every other token carry no loss.
    expected = [IGNORE_INDEX] * len(ids)
    answers = []
    starts = [i for i, t in enumerate(ids) if t == im_start]
    for s in starts:
        end = ids.index(im_end, s)
        if tok.decode(ids[s + 1:s + 1 + role_len]) == "assistant\n":
            for i in range(s + 1 + role_len, end + 1):
                expected[i] = ids[i]
            answers.append(tok.decode(ids[s + 1 + role_len:end + 1]))
    assert len(starts) == 5 and len(answers) == 2  # system, 2 x (user, assistant)
    for i, (got, want) in enumerate(zip(p.labels, expected)):
        assert got == want, f"token {i} ({tok.decode([ids[i]])!r}): label {got}, expected {want}"
    assert answers == [CONVERSATION[1]["value"] + IM_END, CONVERSATION[3]["value"] + IM_END]


def test_two_tile_image_plus_thumbnail_gives_768_image_tokens(tok):
    plan = plan_tiles(896, 448, TilingConfig())
    assert plan.num_tiles == 3
    p = PromptRenderer(tok).render([{"from": "human", "value": "<image>\nDescribe."},
                                    {"from": "gpt", "value": "An ultrasound."}], [plan.num_tiles])
    ctx = tok.token_id(IMG_CONTEXT)
    assert p.input_ids.count(ctx) == 3 * 256
    first = p.input_ids.index(ctx)
    assert p.input_ids[first - 1] == tok.token_id(IMG_START)
    assert p.input_ids[first + 768] == tok.token_id(IMG_END)
    assert all(label == IGNORE_INDEX for label in p.labels[first - 1:first + 769])


def test_system_turn_replaces_default_and_none_drops_it(tok):
    conv = [{"from": "system", "value": "You are a radiologist."}] + CONVERSATION[:2]
    p = PromptRenderer(tok, tokens_per_tile=1).render(conv, [1])
    assert p.input_ids == tok.encode(_full_string(CONVERSATION[:2], [1], 1, "You are a radiologist."))
    bare = PromptRenderer(tok, tokens_per_tile=1, system_prompt=None).render(CONVERSATION[:2], [1])
    assert tok.decode(bare.input_ids).startswith(f"{IM_START}user\n{IMG_START}")


def test_image_count_and_roles_are_checked(tok):
    r = PromptRenderer(tok, tokens_per_tile=1)
    with pytest.raises(PromptError, match="images"):
        r.render(CONVERSATION, [1])  # two <image> tokens, one image
    with pytest.raises(PromptError, match="images"):
        r.render(CONVERSATION, [1, 1, 1])
    with pytest.raises(PromptError, match="role"):
        r.render([{"from": "bot", "value": "hi"}], [])


def test_tokenizer_round_trips_through_a_local_directory(tok, tmp_path):
    loaded = load_tokenizer(tok.save(tmp_path / "tok"))
    text = _full_string(CONVERSATION, [1, 1], 2)
    assert loaded.encode(text) == tok.encode(text)
    assert all(loaded.token_id(t) == tok.token_id(t) for t in SPECIAL_TOKENS)
    with pytest.raises(FileNotFoundError, match="local"):
        load_tokenizer(tmp_path / "nowhere")


def test_qwen2_style_directory_without_tokenizer_json_loads_via_transformers(tok, tmp_path):
    """Qwen2.5 / InternVL releases ship vocab.json + merges.txt + tokenizer_config.json."""
    directory = tmp_path / "qwen_style"
    directory.mkdir()
    tok.backend.model.save(str(directory))
    vocab = tok.backend.get_vocab()
    added = {str(vocab[t]): {"content": t, "special": True, "lstrip": False, "rstrip": False,
                             "normalized": False, "single_word": False} for t in SPECIAL_TOKENS}
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": added,
        "eos_token": IM_END, "pad_token": "<|endoftext|>", "bos_token": None, "unk_token": None}))
    assert not (directory / "tokenizer.json").exists()
    loaded = load_tokenizer(directory)
    text = _full_string(CONVERSATION, [1, 1], 2)
    assert loaded.encode(text) == tok.encode(text)


def test_malformed_conversations_are_refused_by_name(tok):
    r = PromptRenderer(tok, tokens_per_tile=1)
    with pytest.raises(PromptError, match=r"^unknown conversation role 'bot'; expected 'human' or 'gpt' "
                                          r"\(and 'system' first\)$"):
        r.render([{"from": "bot", "value": "hi"}], [])
    for turn in ({"from": "human", "value": None}, {"from": "gpt"}, "just text"):
        with pytest.raises(PromptError, match=r"^a turn must be \{'from': \.\.\., 'value': str\}, got "):
            r.render([turn], [])
    with pytest.raises(PromptError, match=r"^the system turn's value must be a string, got 5$"):
        r.render([{"from": "system", "value": 5}, *CONVERSATION[:2]], [1])
