"""The GRPO loss and advantages against a float64 reference written token by token, and on
groups worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_fleming.grpo.advantages import group_advantages
from megatron_fleming.grpo.loss import aggregate, grpo_token_losses, kl_penalty


def reference_loss(logp, old, ref, adv, mask, seq, *, eps, beta, estimator, aggregation):
    """Loss and its gradient d loss / d logp, one token at a time in Python floats (float64)."""
    rows, cols = len(logp), len(logp[0])
    terms, grads = {}, {}
    for i in range(rows):
        for t in range(cols):
            if not mask[i][t]:
                continue
            r = math.exp(logp[i][t] - old[i][t])
            a = adv[i][t]
            unclipped, clipped = r * a, min(max(r, 1 - eps), 1 + eps) * a
            pg = -min(unclipped, clipped)
            dpg = -a * r if unclipped <= clipped else 0.0
            d = ref[i][t] - logp[i][t]
            kl, dkl = {"k3": (math.exp(d) - d - 1, 1 - math.exp(d)), "k2": (d * d / 2, -d),
                       "k1": (-d, 1.0)}[estimator]
            terms[i, t] = (pg + beta * kl, dpg + beta * dkl, seq[i][t])
    grad = [[0.0] * cols for _ in range(rows)]
    if aggregation == "token-mean":
        n = len(terms)
        loss = sum(v for v, _, _ in terms.values()) / n
        for (i, t), (_, g, _) in terms.items():
            grad[i][t] = g / n
        return loss, grad
    lengths = {}
    for _, _, s in terms.values():
        lengths[s] = lengths.get(s, 0) + 1
    loss = sum(v / lengths[s] for v, _, s in terms.values()) / len(lengths)
    for (i, t), (_, g, s) in terms.items():
        grad[i][t] = g / lengths[s] / len(lengths)
    return loss, grad


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean"])
@pytest.mark.parametrize("estimator", ["k3", "k2", "k1"])
def test_grpo_loss_and_gradient_equal_float64_reference(aggregation, estimator):
    gen = torch.Generator().manual_seed(7)
    rows, cols = 3, 11
    old = -torch.rand(rows, cols, generator=gen, dtype=torch.float64) * 3
    logp = old + 0.4 * torch.randn(rows, cols, generator=gen, dtype=torch.float64)  # many clipped
    ref = old + 0.3 * torch.randn(rows, cols, generator=gen, dtype=torch.float64)
    # Packed rows: row 0 holds sequences 0 and 1, row 1 sequence 2, row 2 sequences 3 and 4.
    seq = torch.tensor([[0] * 5 + [1] * 6, [2] * 9 + [-1] * 2, [3] * 4 + [4] * 5 + [-1] * 2])
    mask = (torch.rand(rows, cols, generator=gen) < 0.8).double() * (seq >= 0)
    per_seq_adv = torch.randn(5, generator=gen, dtype=torch.float64)
    adv = torch.where(seq >= 0, per_seq_adv[seq.clamp(min=0)], torch.zeros((), dtype=torch.float64))
    logp.requires_grad_(True)
    out = grpo_token_losses(logp, old, ref, adv, clip_eps=0.2, kl_coef=0.04, kl_estimator=estimator)
    total, count = aggregate(out.loss, mask, seq, aggregation)
    loss = total / count
    loss.backward()
    want, want_grad = reference_loss(logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(),
                                     mask.tolist(), seq.tolist(), eps=0.2, beta=0.04,
                                     estimator=estimator, aggregation=aggregation)
    assert out.clipped.sum() > 3 and (~out.clipped & (mask > 0)).sum() > 3  # both branches taken
    assert loss.item() == pytest.approx(want, rel=1e-12, abs=1e-14)
    torch.testing.assert_close(logp.grad, torch.tensor(want_grad, dtype=torch.float64),
                               rtol=1e-12, atol=1e-14)


def test_grpo_loss_splits_into_micro_batches_like_the_whole():
    """Sums and counts of two micro-batches give the loss of the mini-batch in one piece."""
    gen = torch.Generator().manual_seed(3)
    logp, old, ref = (torch.randn(4, 6, generator=gen, dtype=torch.float64) for _ in range(3))
    adv = torch.randn(4, 1, generator=gen, dtype=torch.float64)
    mask = (torch.rand(4, 6, generator=gen) < 0.7).double()
    seq = torch.arange(4)[:, None].expand(4, 6)
    for aggregation in ("token-mean", "seq-mean-token-mean"):
        tok = grpo_token_losses(logp, old, ref, adv, clip_eps=0.2, kl_coef=0.04).loss
        whole = aggregate(tok, mask, seq, aggregation)
        first = aggregate(tok[:2], mask[:2], seq[:2], aggregation)
        second = aggregate(tok[2:], mask[2:], seq[2:] - 2, aggregation)
        assert (first[0] + second[0]) / (first[1] + second[1]) == pytest.approx(
            (whole[0] / whole[1]).item(), rel=1e-12)


def test_grpo_clip_and_kl_by_hand():
    logp = torch.tensor([math.log(1.5), math.log(1.5), math.log(0.5)], dtype=torch.float64)
    old = torch.zeros(3, dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    out = grpo_token_losses(logp, old, old, adv, clip_eps=0.2, kl_coef=0.0)
    # ratio 1.5, A=+1: min(1.5, 1.2) -> clipped, loss -1.2; A=-1: min(-1.5, -1.2) = -1.5 unclipped;
    # ratio 0.5, A=+1: min(0.5, 0.8) = 0.5 unclipped.
    assert out.loss.tolist() == pytest.approx([-1.2, 1.5, -0.5], abs=1e-12)
    assert out.clipped.tolist() == [True, False, False]
    policy = torch.tensor([math.log(0.5)], dtype=torch.float64)
    ref = torch.tensor([math.log(0.25)], dtype=torch.float64)
    # d = ref - logp = log(1/2): k3 = 1/2 - log(1/2) - 1 = log 2 - 1/2; k2 = (log 2)^2 / 2; k1 = log 2
    assert kl_penalty(policy, ref, "k3").item() == pytest.approx(math.log(2) - 0.5, abs=1e-15)
    assert kl_penalty(policy, ref, "k2").item() == pytest.approx(math.log(2) ** 2 / 2, abs=1e-15)
    assert kl_penalty(policy, ref, "k1").item() == pytest.approx(math.log(2), abs=1e-15)
    assert kl_penalty(policy, policy, "k3").item() == 0.0
    loss = grpo_token_losses(policy, policy, ref, torch.tensor([0.0], dtype=torch.float64),
                             clip_eps=0.2, kl_coef=0.04).loss
    assert loss.item() == pytest.approx(0.04 * (math.log(2) - 0.5), abs=1e-15)


def test_grpo_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.5, 1.5, 2.5, 1.5],
                            [0.0, 0.0, 0.0, 0.0]])
    pop = group_advantages(rewards, std="population", eps=0.0)
    # mean 0.5, population std 0.5 -> +-1; mean 1.5, deviations (-1, 0, 1, 0), std sqrt(1/2)
    s = math.sqrt(2)
    torch.testing.assert_close(pop.advantages, torch.tensor(
        [[1.0, -1.0, -1.0, 1.0], [0.0] * 4, [-s, 0.0, s, 0.0], [0.0] * 4]))
    assert pop.skipped.tolist() == [False, True, False, True] and pop.num_skipped == 2
    unbiased = group_advantages(rewards, std="unbiased", eps=0.0)
    # unbiased std of (1, 0, 0, 1) is sqrt(1/3) -> 0.5 * sqrt(3)
    h = 0.5 * math.sqrt(3)
    assert unbiased.advantages[0].tolist() == pytest.approx([h, -h, -h, h])
    with_eps = group_advantages(rewards[:1], std="population", eps=1e-4)
    assert with_eps.advantages[0, 0].item() == pytest.approx(0.5 / (0.5 + 1e-4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        group_advantages(torch.ones(3, 1), std="unbiased")


@settings(max_examples=80)
@given(rows=st.lists(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0]), min_size=4, max_size=4),
                     min_size=1, max_size=5),
       std=st.sampled_from(["population", "unbiased"]), eps=st.sampled_from([0.0, 1e-4, 0.5]))
def test_grpo_advantages_equal_the_definition_row_by_row(rows, std, eps):
    """(r - mean) / (std + eps) within each row, in float64 whatever the rewards' dtype; a row
    of equal rewards is skipped (all zero) and only such a row."""
    out = group_advantages(torch.tensor(rows, dtype=torch.float32), std=std, eps=eps)
    assert out.advantages.dtype == torch.float32 and out.advantages.shape == (len(rows), 4)
    assert out.skipped.dtype == torch.bool
    for i, r in enumerate(rows):
        equal = len(set(r)) == 1
        assert bool(out.skipped[i]) is equal
        mean = sum(r) / 4
        spread = math.sqrt(sum((x - mean) ** 2 for x in r) / (3 if std == "unbiased" else 4))
        want = [0.0] * 4 if equal else [(x - mean) / (spread + eps) for x in r]
        assert out.advantages[i].tolist() == pytest.approx(want, rel=1e-6, abs=1e-6)
    assert out.num_skipped == sum(len(set(r)) == 1 for r in rows)


def test_grpo_advantages_refuse_what_they_cannot_normalise():
    with pytest.raises(ValueError, match=r"^rewards must be \[prompts, samples\], got shape \(4,\)$"):
        group_advantages(torch.ones(4))
    with pytest.raises(ValueError, match=r"^std 'sample': use 'population' or 'unbiased'$"):
        group_advantages(torch.ones(2, 2), std="sample")
    with pytest.raises(ValueError, match=r"^the unbiased std needs at least 2 samples per prompt$"):
        group_advantages(torch.ones(3, 1), std="unbiased")
    with pytest.raises(ValueError, match=r"^eps \(-1e-06\) must be >= 0$"):
        group_advantages(torch.ones(2, 2), eps=-1e-6)
    one = group_advantages(torch.tensor([[3.0]]))  # one sample: population std 0, skipped
    assert one.skipped.tolist() == [True] and one.advantages.tolist() == [[0.0]]
    two = group_advantages(torch.tensor([[0.0, 1.0]], dtype=torch.float64), std="unbiased", eps=0.0)
    assert two.advantages.dtype == torch.float64
    assert two.advantages[0].tolist() == pytest.approx([-0.5 / math.sqrt(0.5), 0.5 / math.sqrt(0.5)])
