"""Freezing per training stage: frozen parameters do not move, the others do."""

from __future__ import annotations

import pytest

from megatron_fleming.model.freeze import COMPONENTS, STAGE_TRAINABLE


def test_stage_table_matches_the_paper():
    assert STAGE_TRAINABLE[2] == {"vision", "projector"}  # knowledge injection: LLM frozen
    for stage in (1, 3, 4):
        assert STAGE_TRAINABLE[stage] == set(COMPONENTS)


@pytest.mark.parametrize("frozen", [["language"], ["vision", "projector"]])
def test_frozen_parameters_are_bit_identical_after_steps(torchrun, frozen):
    # DP=2 with the distributed optimizer: frozen parameters must stay out of its shards too.
    result = torchrun("train_worker.py", 2, ["--preset", "tiny", "--distributed-optimizer",
                                             "--freeze", *frozen])
    assert result["frozen"] > 0
    assert result["frozen_unchanged"]
    assert result["trainable_changed"]
    assert result["losses"][-1] < result["losses"][0]
