"""A generation request and its token ids + pixels, InternVL's chat layout: one encoder for every
backend, so two backends given the same request see the same tokens and the same tiles.

Images are tiled as InternVL's ``load_image`` does (dynamic grid up to ``max_tiles`` 448-px tiles
plus a thumbnail, ImageNet normalisation; ``megatron_fleming.data.tiling``); volume slices and
video frames get one tile each (the Fleming-VL demo's ``max_num=1``). The prompt is the ChatML
the training data uses (``megatron_fleming.data.prompt``): the system turn, the user turn with
``<img><IMG_CONTEXT>*n</img>`` per image, then ``<|im_start|>assistant\\n`` to continue from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from megatron_fleming.data.prompt import INTERNVL3_SYSTEM_PROMPT, PromptRenderer
from megatron_fleming.data.tiling import TilingConfig, pil_tiles, plan_tiles, single_tile_plan
from megatron_fleming.data.tokenizer import IM_START, ChatTokenizer


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What a backend is asked: the user turn (one ``<image>`` per image) and the images."""

    qid: str
    prompt: str
    images: tuple[Image.Image, ...]
    single_tile: bool = False  # volume slices and video frames


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    input_ids: list[int]
    pixel_values: torch.Tensor | None  # [tiles, 3, size, size] float32, None without images
    tiles_per_image: tuple[int, ...]


class RequestEncoder:
    """Token ids and normalised tiles of requests, for one tokenizer and one vision tower."""

    def __init__(self, tokenizer: ChatTokenizer, *, image_size: int, tokens_per_tile: int, max_tiles: int = 12,
                 system_prompt: str | None = INTERNVL3_SYSTEM_PROMPT) -> None:
        self.tokenizer = tokenizer
        self.tiling = TilingConfig(image_size=image_size, max_tiles=max_tiles)
        self.renderer = PromptRenderer(tokenizer, tokens_per_tile=tokens_per_tile, system_prompt=system_prompt)
        self.assistant_start = [tokenizer.token_id(IM_START)] + tokenizer.encode("assistant\n")

    def encode(self, request: GenerationRequest) -> EncodedRequest:
        plans = [single_tile_plan(*im.size) if request.single_tile else plan_tiles(*im.size, self.tiling)
                 for im in request.images]
        rendered = self.renderer.render([{"from": "human", "value": request.prompt}], [p.num_tiles for p in plans])
        pixels = [pil_tiles(im, plan, self.tiling.image_size) for im, plan in zip(request.images, plans)]
        return EncodedRequest(input_ids=rendered.input_ids + self.assistant_start,
                              pixel_values=torch.cat(pixels) if pixels else None,
                              tiles_per_image=tuple(p.num_tiles for p in plans))
