"""What a conversion is asked to do, and the entry points that hand it to its ranks.

Light on purpose (no megatron-core, no transformers): the process that launches the ranks only
describes the job; the ranks import the model (`convert.conversion`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from megatron_fleming.convert.launch import run_on_ranks
from megatron_fleming.model.config import MAKE_VOCAB_SIZE_DIVISIBLE_BY, megatron_vocab_pad_multiple

_RANKS = "megatron_fleming.convert.conversion"


@dataclass(frozen=True)
class HFToMcore:
    """Hugging Face folder (either layout) -> Megatron distributed checkpoint at TP x PP."""

    hf: Path
    out: Path
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    device: str = "cpu"
    dtype: str = "auto"  # fp32 | bf16 | auto: the Hugging Face weights' dtype
    vision_padded_heads: int | None = None  # None: next multiple of TP when it does not divide
    #: Megatron-LM's --make-vocab-size-divisible-by: embedding and LM-head rows are padded to a
    #: multiple of this x TP (zero rows, masked out of logits, stripped by mcore-to-hf).
    make_vocab_size_divisible_by: int = MAKE_VOCAB_SIZE_DIVISIBLE_BY
    verify: bool = False

    def __post_init__(self) -> None:
        if self.tensor_parallel < 1 or self.pipeline_parallel < 1:
            raise ValueError(f"--tp and --pp must be >= 1, got {self.tensor_parallel} and "
                             f"{self.pipeline_parallel}")
        if self.make_vocab_size_divisible_by < 1:
            raise ValueError("--make-vocab-size-divisible-by must be >= 1, got "
                             f"{self.make_vocab_size_divisible_by}")
        if self.dtype not in ("auto", "fp32", "bf16"):
            raise ValueError(f"dtype must be auto, fp32 or bf16, not {self.dtype!r}")

    @property
    def vocab_pad_multiple(self) -> int:
        """Megatron-LM's rule: rows padded to a multiple of make_vocab_size_divisible_by x TP."""
        return megatron_vocab_pad_multiple(self.tensor_parallel, self.make_vocab_size_divisible_by)


@dataclass(frozen=True)
class McoreToHF:
    """Megatron distributed checkpoint -> Hugging Face folder in `layout`.

    `layout` None writes the layout the checkpoint was converted from (its `fleming_hf.json`).
    """

    mcore: Path
    out: Path
    layout: str | None = None  # "internvl" | "transformers"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.layout not in (None, "internvl", "transformers"):
            raise ValueError(f"layout must be internvl or transformers, not {self.layout!r}")


def hf_to_mcore(job: HFToMcore) -> float | None:
    """Convert on tp*pp ranks; the max |logits difference| when `job.verify`, else None."""
    return run_on_ranks(f"{_RANKS}:hf_to_mcore_rank", job.tensor_parallel * job.pipeline_parallel, job)


def mcore_to_hf(job: McoreToHF) -> str:
    """Convert on one rank (dist-checkpointing reshards any TP/PP); returns the layout written."""
    return run_on_ranks(f"{_RANKS}:mcore_to_hf_rank", 1, job)
