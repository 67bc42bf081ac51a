"""Stage 2 (medical knowledge injection) trains InternViT and the projector with the LLM frozen.

Real steps of the tiny model through `TrainModule` on the demo shards with pipeline parallelism 2:
stage 0 holds the ViT, the projector, the embedding and one decoder layer; stage 1 holds only
frozen language weights, so it has nothing to train and must still take part in every step. The
model starts, as a stage does, from another model's dist-checkpoint (``checkpoint.init_from``).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "train_workers" / "stage_freeze.py"
CONFIG = REPO / "megatron_fleming" / "configs" / "tiny_cpu.yaml"


def test_stage2_changes_vit_and_projector_only(torchrun, ultrasound_build, tmp_path):
    reports = torchrun(str(WORKER), 2, [
        "--config", str(CONFIG), f"data.path={ultrasound_build.out}", f"checkpoint.dir={tmp_path}",
        "train.stage=2", "parallel.pipeline_parallel=2", "optimizer.lr=1.0e-3"], timeout=240)
    first, last = sorted(reports, key=lambda r: r["rank"])
    assert first["initialised_from_checkpoint"] and last["initialised_from_checkpoint"]
    vision = [n for n in first["changed"] + first["unchanged"]
              if n.startswith(("vision_model.", "vision_projection."))]
    assert len(vision) > 10
    # Every ViT and projector weight moved; every language weight is bit-identical, on both stages.
    assert sorted(first["changed"]) == sorted(vision)
    for report in (first, last):
        assert all(n.startswith("language_model.") for n in report["unchanged"])
        assert sorted(report["requires_grad"]) == sorted(report["changed"])
    assert last["changed"] == [] and last["optimizer_params"] == 0
    assert any(n.startswith("language_model.decoder.") for n in last["unchanged"])
    assert any(n.startswith("language_model.embedding.") for n in first["unchanged"])
    assert first["optimizer_params"] > 0
    assert all(loss > 0 for loss in last["losses"])  # the loss lives on the last stage
