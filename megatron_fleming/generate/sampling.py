"""Choosing the next token: greedy, temperature, top-k, top-p; seeded per request.

Conventions (GRPO and evaluation rely on them):

- Never sampled: rows of the padded vocabulary (ids >= the model's real vocabulary size) and
  `<IMG_CONTEXT>` (`TokenMask`).
- Temperature T > 0 samples from softmax(logits / T) without those ids, restricted to the top-k
  ids and then to the smallest prefix of the sorted distribution whose mass reaches top-p (the
  first id always stays); T = 0 is greedy (argmax, the first of equal maxima, as transformers).
- The log-probability returned for a token is log softmax(logits / T) at that token over the
  real vocabulary (padded rows excluded, `<IMG_CONTEXT>` included), before top-k / top-p
  filtering; T = 1 for greedy. That is exactly the training forward's cross-entropy at
  temperature T (`logprobs.sequence_logprobs`), so rollout and trainer log-probs compare token
  by token. (A trained model gives `<IMG_CONTEXT>` ~zero mass after the prompt: it is never a
  label.)
- Randomness: one uniform draw per sampled token from the request's own `torch.Generator`
  (CPU, seeded per request); the token is the inverse CDF of the filtered distribution, in the
  stable descending order of probabilities. A request's draws depend only on its seed, never on
  the batch around it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded. temperature 0 = greedy; top_k 0 and top_p 1 = no filter."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        numbers = (self.temperature, self.top_p)
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers):
            raise ValueError(f"SamplingParams: temperature and top_p must be numbers, got "
                             f"{self.temperature!r} and {self.top_p!r}")
        counts = (self.top_k, self.max_new_tokens)
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in counts):
            raise ValueError(f"SamplingParams: top_k and max_new_tokens must be integers, got "
                             f"{self.top_k!r} and {self.max_new_tokens!r}")
        if not isinstance(self.ignore_eos, bool):
            raise ValueError(f"SamplingParams: ignore_eos must be true or false, got "
                             f"{self.ignore_eos!r}")
        checks = [
            (self.temperature >= 0, f"temperature ({self.temperature}) must be >= 0 (0 = greedy)"),
            (0 < self.top_p <= 1, f"top_p ({self.top_p}) must be in (0, 1]"),
            (self.top_k >= 0, f"top_k ({self.top_k}) must be >= 0 (0 = off)"),
            (self.max_new_tokens >= 1, f"max_new_tokens ({self.max_new_tokens}) must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"SamplingParams: {message}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def request_seed(seed: int, request_id: str) -> int:
    """A request's own seed from the run seed and its id: the same in any batch, on any rank."""
    digest = hashlib.sha256(f"{seed}/{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class TokenMask:
    """The real vocabulary size (logit rows from there on are padding) and the ids never sampled."""

    vocab_size: int
    never_sampled: tuple[int, ...]

    def _fill(self, logits: torch.Tensor, first_column: int, ids: tuple[int, ...]) -> torch.Tensor:
        width = logits.shape[-1]
        columns = torch.arange(first_column, first_column + width, device=logits.device)
        banned = columns >= self.vocab_size
        for token in ids:
            banned |= columns == token
        return logits.masked_fill(banned, float("-inf"))

    def padding(self, logits: torch.Tensor, first_column: int = 0) -> torch.Tensor:
        """-inf on padded-vocabulary columns of `logits` [..., width] whose first column is the
        global id `first_column` (a tensor-parallel shard starts at rank * width)."""
        return self._fill(logits, first_column, ())

    def sampling(self, logits: torch.Tensor, first_column: int = 0) -> torch.Tensor:
        """-inf on padded columns and on the never-sampled ids."""
        return self._fill(logits, first_column, self.never_sampled)


def scaled_logprobs(logits: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """log softmax(logits / T) in fp32; T = 0 (greedy) counts as 1. `temperature` is a float or a
    [rows] tensor broadcast over the leading dimension."""
    t = torch.as_tensor(temperature, dtype=torch.float32, device=logits.device)
    t = torch.where(t > 0, t, torch.ones_like(t))
    if t.dim():
        t = t.view(-1, *([1] * (logits.dim() - 1)))
    return torch.log_softmax(logits.float() / t, dim=-1)


def sample(logits: torch.Tensor, mask: TokenMask, params: Sequence[SamplingParams],
           generators: Sequence[torch.Generator | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Next tokens [rows] and their log-probabilities [rows] from full-vocabulary logits
    [rows, vocab]. `generators[i]` is row i's generator (None for greedy rows); each sampling row
    draws one uniform from it."""
    rows, vocab = logits.shape
    device = logits.device
    temps = torch.tensor([p.temperature for p in params], dtype=torch.float32, device=device)
    reported = scaled_logprobs(mask.padding(logits), temps)
    allowed = mask.sampling(logits)
    tokens = allowed.argmax(dim=-1)
    drawing = [i for i, p in enumerate(params) if not p.greedy]
    if drawing:
        index = torch.tensor(drawing, device=device)
        sub = scaled_logprobs(allowed[index], temps[index])
        top_k = torch.tensor([params[i].top_k or vocab for i in drawing], device=device)
        top_p = torch.tensor([params[i].top_p for i in drawing], dtype=torch.float32,
                             device=device)
        uniforms = torch.tensor([float(torch.rand((), generator=generators[i])) for i in drawing],
                                dtype=torch.float32, device=device)
        sorted_lp, order = torch.sort(sub, dim=-1, descending=True, stable=True)
        probs = sorted_lp.exp()
        rank = torch.arange(vocab, device=device)
        keep = rank[None, :] < top_k[:, None]
        keep &= (probs.cumsum(-1) - probs) < top_p[:, None]
        keep[:, 0] = True
        cdf = (probs * keep).cumsum(-1)
        target = uniforms[:, None] * cdf[:, -1:]
        chosen = torch.searchsorted(cdf, target, right=True).clamp(max=vocab - 1)
        tokens[index] = order.gather(-1, chosen).squeeze(-1)
    return tokens, reported.gather(-1, tokens[:, None]).squeeze(-1)
