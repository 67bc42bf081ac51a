"""Edges of the GRPO loss and advantages (found by mutation testing): the clamped log-ratios,
the per-token outputs besides the loss, the clipped flag at equality, the defaults, and the
sequence-mean aggregation on empty, one-token and fully masked sequences."""

from __future__ import annotations

import math

import pytest
import torch

from megatron_fleming.grpo.advantages import group_advantages
from megatron_fleming.grpo.loss import aggregate, grpo_token_losses, kl_penalty


def test_log_ratios_are_clamped_both_ways():
    logp = torch.tensor([50.0, -50.0, 0.5], dtype=torch.float64)
    zero = torch.zeros(3, dtype=torch.float64)
    out = grpo_token_losses(logp, zero, zero, torch.ones(3, dtype=torch.float64), clip_eps=0.2, kl_coef=0.1)
    assert torch.allclose(out.ratio, torch.tensor([math.exp(20), math.exp(-20), math.exp(0.5)], dtype=torch.float64))
    assert torch.allclose(out.ratio.log(), torch.tensor([20.0, -20.0, 0.5], dtype=torch.float64))  # exp(-20), not less
    # the reference minus the policy, clamped to +-20 before exp
    k3 = [math.exp(-20) + 20 - 1, math.exp(20) - 20 - 1, math.exp(-0.5) + 0.5 - 1]
    assert torch.allclose(out.kl, torch.tensor(k3, dtype=torch.float64))
    assert torch.allclose(kl_penalty(logp, zero), out.kl)  # k3 is the default estimator
    assert torch.allclose(kl_penalty(logp, zero, "k1"), torch.tensor([20.0, -20.0, 0.5], dtype=torch.float64))


def test_clipped_flag_only_where_the_clip_changed_the_term():
    logp = torch.log(torch.tensor([1.0, 1.1, 1.5, 0.5]))
    old = torch.zeros(4)
    out = grpo_token_losses(logp, old, old, torch.tensor([1.0, 1.0, 1.0, -1.0]), clip_eps=0.2, kl_coef=0.0)
    # ratio 1 and 1.1 inside the range (both terms equal): not clipped; 1.5 with A > 0 and 0.5 with
    # A < 0 take the clipped term
    assert out.clipped.tolist() == [False, False, True, True]


def test_default_eps_is_megatron_rls():
    adv = group_advantages(torch.tensor([[0.0, 1.0]], dtype=torch.float64)).advantages
    assert torch.allclose(adv, torch.tensor([[-0.5, 0.5]], dtype=torch.float64) / (0.5 + 1e-4))


def test_sequence_mean_counts_only_sequences_with_masked_tokens():
    loss = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    seq = torch.tensor([[0, 0, 1, 2, -1]])  # sequence 1 fully masked, sequence 2 one token
    total, count = aggregate(loss, mask, seq, "seq-mean-token-mean")
    assert total.item() == pytest.approx(1.5 + 4.0) and count.item() == 2
    assert count.dtype == loss.dtype
    empty = torch.zeros(0, 0, dtype=torch.float64)
    total, count = aggregate(empty, empty, torch.zeros(0, 0, dtype=torch.long), "seq-mean-token-mean")
    assert total.item() == 0 and count.item() == 0


def test_unknown_names_are_refused_with_the_choices():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match=r"KL estimator 'k4': use one of \('k1', 'k2', 'k3'\)"):
        kl_penalty(x, x, "k4")
    with pytest.raises(ValueError, match=r"aggregation 'sum': use one of \('token-mean', 'seq-mean-token-mean'\)"):
        aggregate(x, x, x.long(), "sum")
