"""Requests -> token ids and image tiles, exactly as training encodes a sample.

The training task encoder is reused, not re-implemented: its tiling plan (dynamic tiles with a
thumbnail; the tile budget shared by a few images; one tile per frame for video / volume samples
or many images), its ChatML renderer and its tile decoder. A chat prompt becomes the rendered
system and user turns followed by the assistant header ``<|im_start|>assistant\\n``, the point
where InternVL's chat template hands over to the model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from megatron_fleming.data.decode import CorruptImageError, image_size
from megatron_fleming.data.prompt import IMAGE_PLACEHOLDER, INTERNVL3_SYSTEM_PROMPT, PromptError
from megatron_fleming.data.task_encoder import FlemingTaskEncoder, TaskEncoderConfig
from megatron_fleming.data.tiling import TilingConfig
from megatron_fleming.data.tokenizer import ChatTokenizer
from megatron_fleming.generate.requests import (
    ImageInput,
    PreparedRequest,
    Request,
    RequestError,
)
from megatron_fleming.generate.sampling import SamplingParams, request_seed
from megatron_fleming.model.config import VLMConfig


def _medium(image: ImageInput, rid: str) -> bytes | Image.Image:
    if isinstance(image, (bytes, Image.Image)):
        return image
    try:
        return Path(image).read_bytes()
    except OSError as e:
        raise RequestError(f"request {rid!r}: cannot read image {image}: {e}", rid) from None


class RequestEncoder:
    """Turns `Request`s into `PreparedRequest`s for one model and tokenizer."""

    def __init__(self, cfg: VLMConfig, tokenizer: ChatTokenizer, *, max_tiles: int = 12,
                 system_prompt: str | None = INTERNVL3_SYSTEM_PROMPT,
                 sampling: SamplingParams = SamplingParams(), seed: int = 0) -> None:
        if tokenizer.image_context_id != cfg.image_context_token_id:
            raise ValueError(f"the tokenizer's <IMG_CONTEXT> id is {tokenizer.image_context_id} but "
                             f"the model's is {cfg.image_context_token_id}: wrong tokenizer")
        tiling = TilingConfig(image_size=cfg.vision.image_size, max_tiles=max_tiles)
        self.task_encoder = FlemingTaskEncoder(tokenizer, TaskEncoderConfig(
            tiling=tiling, tokens_per_tile=cfg.tokens_per_tile, system_prompt=system_prompt))
        self.renderer = self.task_encoder.renderer
        self.tokenizer = tokenizer
        self.image_context_id = cfg.image_context_token_id
        self.tokens_per_tile = cfg.tokens_per_tile
        self.sampling = sampling
        self.seed = seed

    def prompt_ids(self, prompt: str, tiles_per_image: list[int], system: str | None = None,
                   history: list[tuple[str, str]] = ()) -> list[int]:
        """Chat-template ids up to and including the assistant header: earlier (user, assistant)
        turns of `history`, then `prompt`. Without any `<image>`, one per image goes in front of
        the first user turn."""
        questions = [q for q, _ in history] + [prompt]
        if tiles_per_image and not any(IMAGE_PLACEHOLDER in q for q in questions):
            questions[0] = f"{IMAGE_PLACEHOLDER}\n" * len(tiles_per_image) + questions[0]
        turns = [] if system is None else [{"from": "system", "value": system}]
        for question, (_, answer) in zip(questions, history):
            turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        turns.append({"from": "human", "value": questions[-1]})
        rendered = self.renderer.render(turns, tiles_per_image)
        return rendered.input_ids + [self.renderer.im_start] + self.tokenizer.encode("assistant\n")

    def prepare(self, request: Request) -> PreparedRequest:
        rid = request.id
        media = [_medium(image, rid) for image in request.images]
        try:
            sizes = [image_size(m) for m in media]
            plans = self.task_encoder.plan(sizes, request.modality)
            pixels = self.task_encoder.tile_decoder(media, plans) if media else None
        except CorruptImageError as e:
            raise RequestError(f"request {rid!r}: {e}", rid) from None
        tiles = [p.num_tiles for p in plans]
        if request.prompt is not None:
            try:
                ids = self.prompt_ids(request.prompt, tiles, request.system, list(request.history))
            except PromptError as e:
                raise RequestError(f"request {rid!r}: {e}", rid) from None
        else:
            ids = list(request.input_ids)
            slots = ids.count(self.image_context_id)
            want = sum(tiles) * self.tokens_per_tile
            if slots != want:
                raise RequestError(
                    f"request {rid!r}: input_ids hold {slots} <IMG_CONTEXT> tokens but its "
                    f"{len(tiles)} image(s) tile into {sum(tiles)} tiles x {self.tokens_per_tile} "
                    f"= {want} (tiling {tiles}); expand each image with the same max_tiles", rid)
        sampling = request.sampling or self.sampling
        seed = request.seed if request.seed is not None else request_seed(self.seed, rid)
        return PreparedRequest(id=rid, input_ids=ids, pixel_values=pixels, sampling=sampling,
                               seed=seed)
