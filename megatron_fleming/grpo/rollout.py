"""Rollouts: N samples of each prompt from the generation engine, on the training weights.

The engine (`megatron_fleming.generate`) decodes with a KV cache on this rank's stage of the
model being trained (no second engine, no weight sync) and places tokens with the V2PE position
function training uses. The N samples of a prompt are N requests with the same prompt ids and
tiles; the engine batches ``N x rollout_prompts`` of them at a time, a prompt's N always in one
batch (equal prompt lengths stay together when it sorts by length).

Seeds: sample j of the prompt with key k at iteration i draws from ``hash(seed, i, k, j)``, a
seed of its own, so the tokens depend neither on the batch around the request nor on the
parallel layout, and a resumed run samples exactly what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch

from megatron_fleming.data.tokenizer import ChatTokenizer
from megatron_fleming.generate.engine import GenerationEngine
from megatron_fleming.generate.requests import PreparedRequest
from megatron_fleming.generate.sampling import SamplingParams
from megatron_fleming.grpo.prompts import PromptSample


def sample_seed(seed: int, iteration: int, key: str, sample: int) -> int:
    digest = hashlib.sha256(f"grpo/{seed}/{iteration}/{key}/{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass
class Rollout:
    """One sampled response: the prompt it answers, its tokens (a final end token included) and
    their log-probabilities at sampling time (log softmax(logits / T), the engine's convention)."""

    group: int  # index of its prompt in the rollout batch
    prompt_ids: list[int]
    pixel_values: torch.Tensor | None
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    text: str

    @property
    def sequence_ids(self) -> list[int]:
        """What training feeds the model: the prompt and every sampled token but the last
        (the last is only ever a target)."""
        return self.prompt_ids + self.token_ids[:-1]


def generate_rollouts(engine: GenerationEngine, tokenizer: ChatTokenizer,
                      prompts: Sequence[PromptSample], *, generations: int,
                      sampling: SamplingParams, seed: int, iteration: int) -> list[list[Rollout]]:
    """[prompt][sample] rollouts of this rank's prompts (identical on every rank of a replica);
    the text is the tokens decoded without a final end token."""
    requests = [
        PreparedRequest(id=f"{p.__key__}/{j}", input_ids=list(p.prompt_ids),
                        pixel_values=p.pixel_values, sampling=sampling,
                        seed=sample_seed(seed, iteration, p.__key__, j))
        for p in prompts for j in range(generations)]
    results = engine.run(requests)
    groups: list[list[Rollout]] = [[] for _ in prompts]
    for index, result in enumerate(results):
        group = index // generations
        p = prompts[group]
        body = result.token_ids[:-1] if result.finish_reason == "stop" else result.token_ids
        groups[group].append(Rollout(group=group, prompt_ids=list(p.prompt_ids),
                                     pixel_values=p.pixel_values, token_ids=result.token_ids,
                                     logprobs=result.logprobs, finish_reason=result.finish_reason,
                                     text=tokenizer.decode(body)))
    return groups
