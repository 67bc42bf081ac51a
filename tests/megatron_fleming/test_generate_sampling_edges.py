"""Edges of the sampler (found by mutation testing): tied probabilities keep id order in the
inverse CDF (an unstable sort reorders ties past a few hundred ids), and the shapes returned."""

from __future__ import annotations

import torch

from megatron_fleming.generate.sampling import SamplingParams, TokenMask, sample


def test_tied_ids_are_drawn_in_id_order():
    n = 1024
    logits = torch.zeros(1, n)  # every id equally likely: the token is the draw's n-quantile
    mask = TokenMask(vocab_size=n, never_sampled=())
    draws = []
    for seed in range(16):
        u = float(torch.rand((), generator=torch.Generator().manual_seed(seed)))
        token, _ = sample(logits, mask, [SamplingParams(temperature=1.0)], [torch.Generator().manual_seed(seed)])
        assert abs(int(token) - u * n) <= 1, (seed, u, int(token))
        draws.append((u, int(token)))
    tokens = [t for _, t in sorted(draws)]
    assert tokens == sorted(tokens)


def test_one_token_and_one_logprob_per_row():
    logits = torch.randn(3, 9, generator=torch.Generator().manual_seed(0))
    params = [SamplingParams(), SamplingParams(temperature=0.7), SamplingParams(temperature=1.0, top_k=2)]
    gens = [None, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    tokens, logprobs = sample(logits, TokenMask(vocab_size=9, never_sampled=()), params, gens)
    assert tokens.shape == (3,) and logprobs.shape == (3,)
    assert tokens.dtype == torch.long and logprobs.dtype == torch.float32
