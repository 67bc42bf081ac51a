"""Generation backends behind one interface: ``generate(requests) -> responses``, greedy,
batched, deterministic (same requests in the same order -> the same responses).

* ``transformers``: transformers' ``InternVLForConditionalGeneration.generate`` on a Hugging Face
  checkpoint folder in transformers' layout — the reference run.
* ``fleming``: our engine (``megatron_fleming.generate``) on a Megatron checkpoint — not wired on
  this branch; ``make_backend`` refuses it with the reason.

Both see the same tokens and tiles (``encoding.RequestEncoder``), the image-context token is
never generated, and a response is the text before the first ``<|im_end|>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import torch

from megatron_fleming.data.tokenizer import IM_END, load_tokenizer
from megatron_fleming.eval.encoding import GenerationRequest, RequestEncoder

BACKENDS = ("transformers", "fleming")


class Backend(Protocol):
    name: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationConfig:
    """Greedy decoding settings shared by the backends."""

    max_new_tokens: int = 1024  # MedEvalKit's default
    batch_size: int = 8
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto (bf16 on cuda, fp32 on cpu) | fp32 | bf16
    max_tiles: int = 12

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.max_tiles < 1:
            raise ValueError("max_new_tokens, batch_size and max_tiles must be >= 1")
        if self.device not in ("auto", "cpu", "cuda") or self.dtype not in ("auto", "fp32", "bf16"):
            raise ValueError(f"device {self.device!r} / dtype {self.dtype!r}: use auto|cpu|cuda and auto|fp32|bf16")

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda but torch sees no GPU")
        return torch.device(self.device)

    def torch_dtype(self, device: torch.device) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        return {"fp32": torch.float32, "bf16": torch.bfloat16}[self.dtype]


class TransformersBackend:
    """``InternVLForConditionalGeneration`` from a transformers-layout folder (``config.json`` with
    ``model_type: internvl`` and the tokenizer files), left-padded batches."""

    name = "transformers"

    def __init__(self, checkpoint: str | Path, config: GenerationConfig = GenerationConfig()) -> None:
        import json

        from transformers import InternVLForConditionalGeneration

        folder = Path(checkpoint)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{folder}: no config.json; --hf takes a Hugging Face checkpoint folder")
        model_type = json.loads(cfg_path.read_text()).get("model_type")
        if model_type != "internvl":
            raise ValueError(f"{folder}: model_type {model_type!r}; the transformers backend reads transformers' "
                             "InternVL layout ('internvl'). Convert the original release layout with "
                             "`fleming convert hf-to-mcore` then `mcore-to-hf --layout transformers`")
        self.config = config
        self.device = config.torch_device()
        self.dtype = config.torch_dtype(self.device)
        self.model = InternVLForConditionalGeneration.from_pretrained(folder, dtype=self.dtype).to(self.device).eval()
        self.tokenizer = load_tokenizer(folder)
        mc = self.model.config
        size = mc.vision_config.image_size
        self.encoder = RequestEncoder(self.tokenizer, image_size=int(size[0] if isinstance(size, (list, tuple)) else size),
                                      tokens_per_tile=int(mc.image_seq_length), max_tiles=config.max_tiles)
        self.eos = self.tokenizer.token_id(IM_END)
        self.pad = self.tokenizer.pad_id

    @torch.no_grad()
    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        out: list[str] = []
        bs = self.config.batch_size
        for start in range(0, len(requests), bs):
            out.extend(self._batch(requests[start:start + bs]))
        return out

    def _batch(self, requests: Sequence[GenerationRequest]) -> list[str]:
        encoded = [self.encoder.encode(r) for r in requests]
        width = max(len(e.input_ids) for e in encoded)
        ids = torch.full((len(encoded), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, width - len(e.input_ids):] = torch.tensor(e.input_ids)
            mask[row, width - len(e.input_ids):] = 1
        pixels = [e.pixel_values for e in encoded if e.pixel_values is not None]
        kwargs = {"pixel_values": torch.cat(pixels).to(self.device, self.dtype)} if pixels else {}
        generated = self.model.generate(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device), max_new_tokens=self.config.max_new_tokens,
            do_sample=False, num_beams=1, eos_token_id=self.eos, pad_token_id=self.pad,
            suppress_tokens=[self.tokenizer.image_context_id], **kwargs)
        responses = []
        for row in generated[:, width:].tolist():
            if self.eos in row:
                row = row[:row.index(self.eos)]
            # As InternVL's ``chat`` decodes: special tokens (a stray <|im_start|>...) left out.
            responses.append(self.tokenizer.backend.decode([t for t in row if t != self.pad], skip_special_tokens=True))
        return responses


def make_backend(name: str, *, hf: str | Path | None, mcore: str | Path | None, config: GenerationConfig) -> Backend:
    """The backend ``name`` on the checkpoint given; a combination it cannot run is refused."""
    if name == "transformers":
        if hf is None:
            raise ValueError("--backend transformers needs --hf DIR (a transformers-layout InternVL folder); "
                             "for a Megatron checkpoint convert it with `fleming convert mcore-to-hf` first")
        return TransformersBackend(hf, config)
    if name == "fleming":
        # Slot for the generation engine (megatron_fleming.generate): wired when that lands.
        raise NotImplementedError("--backend fleming: the generation engine (megatron_fleming.generate) is not "
                                  "part of this build yet; use --backend transformers --hf DIR")
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
