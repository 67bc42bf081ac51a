"""ChatML rendering of a datakit conversation, InternVL2.5/3 style, with loss labels.

The token stream is the one InternVL's ``preprocess_internvl2_5`` produces, turn by turn::

    <|im_start|>system\\n{system}<|im_end|>\\n
    <|im_start|>user\\n{question, each <image> -> <img><IMG_CONTEXT>*n</img>}<|im_end|>\\n
    <|im_start|>assistant\\n{answer}<|im_end|>\\n

An interleaved document (stage-1 pretraining, `render_document`) has no chat template: its text
with each ``<image>`` expanded the same way, then ``<|endoftext|>``; every text token (and the end
token) is labelled, image tokens never are.

Labels (aligned with the tokens, not yet shifted) are -100 except on assistant turns, where, as in
InternVL, the first ``len(tokens("<|im_start|>assistant\\n"))`` tokens and the trailing ``\\n`` are
masked: the model learns the answer and its ``<|im_end|>``. Text between special tokens is encoded
as one piece, exactly as a tokenizer does with added tokens, so the ids equal tokenizing the whole
rendered string; the image runs are inserted as ids (no 3,000-token string to scan).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from megatron_fleming.data.tokenizer import (
    IM_END,
    IM_START,
    IMG_CONTEXT,
    IMG_END,
    IMG_START,
    PAD,
    ChatTokenizer,
)

IGNORE_INDEX = -100
IMAGE_PLACEHOLDER = "<image>"
#: InternVL2.5 / InternVL3's default system message (template ``internvl2_5``).
INTERNVL3_SYSTEM_PROMPT = ("你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位"
                           "联合开发的多模态大语言模型。")
_ROLES = {"human": "user", "gpt": "assistant"}


class PromptError(ValueError):
    """The conversation cannot be rendered (unknown role, image count mismatch)."""


@dataclass(frozen=True)
class RenderedPrompt:
    """Token ids and aligned labels (token id where trained, IGNORE_INDEX elsewhere)."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


class PromptRenderer:
    """Renders conversations with one tokenizer; special-token ids are looked up once."""

    def __init__(self, tokenizer: ChatTokenizer, *, tokens_per_tile: int = 256,
                 system_prompt: str | None = INTERNVL3_SYSTEM_PROMPT) -> None:
        tokenizer.check_required()
        self.tok = tokenizer
        self.tokens_per_tile = tokens_per_tile
        self.system_prompt = system_prompt
        self.im_start, self.im_end = tokenizer.token_id(IM_START), tokenizer.token_id(IM_END)
        self.img_start, self.img_end = tokenizer.token_id(IMG_START), tokenizer.token_id(IMG_END)
        self.img_context = tokenizer.token_id(IMG_CONTEXT)
        self.newline = tokenizer.encode("\n")
        # InternVL masks this many leading tokens of an assistant turn.
        self.assistant_prefix_len = 1 + len(tokenizer.encode("assistant\n"))
        self.end_of_text = tokenizer.token_id(PAD)  # Qwen2.5's <|endoftext|> ends a document

    def _turn(self, role: str, body: list[str], image_tokens: Sequence[int]) -> list[int]:
        """`<|im_start|>{role}\\n{body}<|im_end|>\\n`; an image run goes between body pieces."""
        ids = [self.im_start] + self.tok.encode(f"{role}\n{body[0]}")
        for n, text in zip(image_tokens, body[1:], strict=True):
            ids += [self.img_start] + [self.img_context] * n + [self.img_end]
            if text:
                ids += self.tok.encode(text)
        return ids + [self.im_end] + self.newline

    def render(self, conversation: Sequence[dict], tiles_per_image: Sequence[int]) -> RenderedPrompt:
        """Tokens and labels; the i-th ``<image>`` of the human turns gets tiles_per_image[i] tiles."""
        turns = list(conversation)
        system = self.system_prompt
        if turns and isinstance(turns[0], dict) and turns[0].get("from") == "system":
            system = turns.pop(0).get("value")
            if not isinstance(system, str):
                raise PromptError(f"the system turn's value must be a string, got {system!r:.80}")
        input_ids: list[int] = []
        labels: list[int] = []
        if system is not None:
            ids = self._turn("system", [system], ())
            input_ids += ids
            labels += [IGNORE_INDEX] * len(ids)
        next_image = 0
        for turn in turns:
            if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
                raise PromptError(f"a turn must be {{'from': ..., 'value': str}}, got {turn!r:.80}")
            role = _ROLES.get(turn.get("from"))
            if role is None:
                raise PromptError(f"unknown conversation role {turn.get('from')!r}; "
                                  "expected 'human' or 'gpt' (and 'system' first)")
            value = turn["value"]
            if role == "user":
                body = value.split(IMAGE_PLACEHOLDER)
                n = len(body) - 1
                tiles = tiles_per_image[next_image:next_image + n]
                if len(tiles) != n:
                    raise PromptError(f"{IMAGE_PLACEHOLDER} tokens exceed the "
                                      f"{len(tiles_per_image)} images of the sample")
                next_image += n
                ids = self._turn(role, body, [t * self.tokens_per_tile for t in tiles])
                input_ids += ids
                labels += [IGNORE_INDEX] * len(ids)
            else:
                ids = self._turn(role, [value], ())
                k, tail = self.assistant_prefix_len, len(self.newline)
                input_ids += ids
                labels += [IGNORE_INDEX] * k + ids[k:len(ids) - tail] + [IGNORE_INDEX] * tail
        if next_image != len(tiles_per_image):
            raise PromptError(f"{next_image} {IMAGE_PLACEHOLDER} tokens for "
                              f"{len(tiles_per_image)} images")
        return RenderedPrompt(input_ids=input_ids, labels=labels)

    def render_document(self, text: str, tiles_per_image: Sequence[int]) -> RenderedPrompt:
        """An interleaved document: text and image runs in document order, ``<|endoftext|>`` last;
        labels on every text token and the end token, never on image tokens."""
        if not isinstance(text, str) or not text.replace(IMAGE_PLACEHOLDER, "").strip():
            raise PromptError("an interleaved document needs text besides its images")
        pieces = text.split(IMAGE_PLACEHOLDER)
        if len(pieces) - 1 != len(tiles_per_image):
            raise PromptError(f"{len(pieces) - 1} {IMAGE_PLACEHOLDER} markers for {len(tiles_per_image)} images")
        input_ids: list[int] = []
        labels: list[int] = []
        for k, piece in enumerate(pieces):
            if k:
                run = [self.img_start] + [self.img_context] * (tiles_per_image[k - 1] * self.tokens_per_tile) \
                    + [self.img_end]
                input_ids += run
                labels += [IGNORE_INDEX] * len(run)
            ids = self.tok.encode(piece) if piece else []
            input_ids += ids
            labels += ids
        input_ids.append(self.end_of_text)
        labels.append(self.end_of_text)
        return RenderedPrompt(input_ids=input_ids, labels=labels)
