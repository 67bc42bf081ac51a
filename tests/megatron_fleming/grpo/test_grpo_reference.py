"""The frozen reference: the initial weights swapped in for scoring and swapped back, with the
same parameter objects (what the optimizer and gradient buffers hold) throughout."""

from __future__ import annotations

import torch

from megatron_fleming.grpo.reference import ReferenceWeights


def test_grpo_reference_swap_scores_with_initial_weights_and_restores():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    x = torch.randn(5, 4)
    initial = model(x).detach()
    reference = ReferenceWeights([model])
    assert reference.bytes == sum(p.numel() * 4 for p in model.parameters())
    params = list(model.parameters())
    pointers = [p.data_ptr() for p in params]
    with torch.no_grad():
        for p in params:
            p.add_(1.0)  # training moved the weights
    trained = model(x).detach()
    assert not torch.allclose(trained, initial)
    with reference.swapped_in():
        assert torch.equal(model(x), initial)
    assert torch.equal(model(x).detach(), trained)
    assert [p.data_ptr() for p in model.parameters()] == pointers
    assert all(a is b for a, b in zip(model.parameters(), params))
    # an error inside the block still restores the training weights
    try:
        with reference.swapped_in():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert torch.equal(model(x).detach(), trained)
