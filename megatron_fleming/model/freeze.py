"""Freezing components per training stage (Fleming-VL paper, Table 2).

Stage 2 (medical knowledge injection) trains the ViT and the projector with the LLM frozen; the
other stages train everything. Freeze before wrapping in megatron DDP: DDP allocates gradient
buffers, and the optimizer takes parameters, only for what still requires grad.
"""

from __future__ import annotations

from typing import Iterable, Literal

import torch

from megatron_fleming.model.parallel import unwrap

Component = Literal["vision", "projector", "language"]
COMPONENTS: tuple[Component, ...] = ("vision", "projector", "language")

# Trainable components of each Fleming-VL training stage.
STAGE_TRAINABLE: dict[int, frozenset[str]] = {
    1: frozenset(COMPONENTS),            # interleaved pretraining
    2: frozenset({"vision", "projector"}),  # medical knowledge injection, LLM frozen
    3: frozenset(COMPONENTS),            # instruction tuning
    4: frozenset(COMPONENTS),            # GRPO
}


def _component_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module | None]:
    vlm = unwrap(model)
    return {"vision": vlm.vision_model, "projector": vlm.vision_projection,
            "language": vlm.language_model}


def freeze(chunks: Iterable[torch.nn.Module], frozen: Iterable[str]) -> None:
    """Set requires_grad=False on every parameter of the named components, on this rank's chunks."""
    frozen = set(frozen)
    unknown = frozen - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown components {sorted(unknown)}; choose from {COMPONENTS}")
    for chunk in chunks:
        for name, module in _component_modules(chunk).items():
            if name in frozen and module is not None:  # vision/projector live on stage 0 only
                module.requires_grad_(False)


def freeze_for_stage(chunks: Iterable[torch.nn.Module], stage: int) -> None:
    if stage not in STAGE_TRAINABLE:
        raise ValueError(f"training stage {stage} is not one of {sorted(STAGE_TRAINABLE)}")
    freeze(chunks, set(COMPONENTS) - STAGE_TRAINABLE[stage])


def trainable_parameter_count(chunks: Iterable[torch.nn.Module]) -> dict[str, int]:
    """Trainable parameters per component on this rank (after TP/PP sharding)."""
    counts = dict.fromkeys(COMPONENTS, 0)
    for chunk in chunks:
        for name, module in _component_modules(chunk).items():
            if module is not None:
                counts[name] += sum(p.numel() for p in module.parameters() if p.requires_grad)
    return counts
