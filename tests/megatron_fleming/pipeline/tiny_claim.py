"""What the tiny pipeline's report claims, as bounds that can fail (tests/megatron_fleming/pipeline/:
the local run in test_pipeline_tiny.py, the Slurm run in test_pipeline_slurm.py).

On the held-out modality items (multiple choice over seven modalities, chance 1/7; k modalities
held out, the rarest with ``n_min`` items):

- after stage 3 the model beats the untrained one by at least ``MARGIN`` accuracy points, and
  chance by at least ``OVER_CHANCE`` points;
- its answers depend on the image: balanced accuracy (the mean over modalities) is at least one
  item of the rarest modality (100 / (k * n_min) points) above the most any constant answer
  scores (100 / k). A model that names one modality for every image cannot pass it, however the
  items are distributed; measured, stage 3 names three modalities and gets two of them right;
- GRPO (stage 4) does not lower accuracy by more than one item, nor balanced accuracy by more
  than one item of the rarest modality: its rollouts sample at temperature 0.9 over 12 small
  steps, the evaluation decodes greedily, and on a fixture of about ten items one answer
  flipping either way is within that noise (a real drop costs more than one item).
"""

from __future__ import annotations

MARGIN = 20.0  # accuracy points, stage 3 over the untrained model
OVER_CHANCE = 15.0  # accuracy points, stage 3 over chance


def heldout_scores(figures: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Accuracy and balanced accuracy (%) on the held-out fixture after each evaluated point."""
    held = [n for n, b in figures["benchmarks"].items() if b["heldout"]]
    assert len(held) == 1, f"one held-out benchmark expected, got {held}"
    points = [p for p in figures["points"] if p["evaluated"]]
    return ({p["name"]: p["scores"][held[0]]["accuracy"] for p in points},
            {p["name"]: p["balanced"][held[0]] for p in points})


def check_tiny_claim(figures: dict) -> dict[str, float]:
    """Assert the claim on a report's figures (``report/report.json``); returns the accuracies."""
    acc, bal = heldout_scores(figures)
    assert list(acc) == ["init", "stage1", "stage2", "stage3", "stage4"], acc
    held = figures["heldout"]
    items, chance = held["items"], 100 * held["chance_accuracy"]
    assert items >= 9, f"only {items} held-out items"
    assert abs(chance - 100 / 7) < 1e-6, chance  # seven options on every item
    per_modality = held["answers"]  # items by right answer: one modality each
    k, n_min = len(per_modality), min(per_modality.values())
    assert k >= 3, f"held-out items of {k} modalities: {per_modality}"
    constant, one_rare = 100 / k, 100 / (k * n_min)
    assert acc["stage3"] >= acc["init"] + MARGIN, f"stage 3 does not beat the untrained model by {MARGIN}: {acc}"
    assert acc["stage3"] >= chance + OVER_CHANCE, f"stage 3 within {OVER_CHANCE} points of chance {chance:.1f}: {acc}"
    assert bal["stage3"] >= constant + one_rare - 1e-9, (
        f"stage 3 balanced accuracy not one rare item above a constant answer's {constant:.1f}: {bal}")
    assert acc["stage4"] >= acc["stage3"] - 100 / items - 1e-9, f"GRPO lowered held-out accuracy by > 1 item: {acc}"
    assert bal["stage4"] >= bal["stage3"] - one_rare - 1e-9, f"GRPO lowered balanced accuracy by > 1 item: {bal}"
    # never trained on: the builds that hold the held-out sources dropped their images
    assert sum(b["contaminated_samples"] for b in figures["builds"].values()) > 0
    return acc
