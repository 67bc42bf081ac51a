"""Generation backends behind one interface: ``generate(requests) -> responses``, greedy,
batched, deterministic (same requests in the same order -> the same responses).

* ``fleming`` (the default): our engine (``megatron_fleming.generate``) on a Megatron checkpoint
  (``--mcore``: converted, or a training run) or a Hugging Face folder (``--hf``, converted in
  memory); TP / PP / data-parallel replicas on the ranks of the launch.
* ``transformers``: transformers' ``InternVLForConditionalGeneration.generate`` on a Hugging Face
  checkpoint folder in transformers' layout — the reference run.

Both encode with ``megatron_fleming.generate.inputs.RequestEncoder`` (the training task
encoder's renderer and tiling), each image of a request tiled on its own up to ``max_tiles`` as
MedEvalKit's ``load_image`` does; both never generate ``<IMG_CONTEXT>``, stop at ``<|im_end|>``
only (InternVL's ``chat``) and decode the response as it does (``response_text``). The encoder's
tiles are uint8: our model normalises them on its device, and the transformers backend normalises
them with the same function (`model.pixels.normalize_pixels`) before ``generate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import torch

from megatron_fleming.data.tokenizer import IM_END, ChatTokenizer, load_tokenizer
from megatron_fleming.eval import BACKENDS
from megatron_fleming.generate.inputs import RequestEncoder
from megatron_fleming.generate.requests import Request
from megatron_fleming.generate.sampling import SamplingParams
from megatron_fleming.model.pixels import normalize_pixels

if TYPE_CHECKING:
    from megatron_fleming.generate.loading import LoadedModel
    from megatron_fleming.model.config import VLMConfig



class Backend(Protocol):
    name: str
    items_per_call: int  # how many items' media the runner loads and hands over at once
    info: dict[str, Any]  # what run.json records about the model and how it ran

    def generate(self, requests: Sequence[Request]) -> list[str]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationConfig:
    """Greedy decoding settings; the parallel ones and ``v2pe_delta`` are the engine's."""

    max_new_tokens: int = 1024  # MedEvalKit's default
    batch_size: int = 8
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto (bf16 on cuda, fp32 on cpu) | fp32 | bf16
    max_tiles: int = 12
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    v2pe_delta: float | None = None  # None: the checkpoint's (1 for --hf)
    transformer_impl: str = "local"  # local | transformer_engine

    def __post_init__(self) -> None:
        if min(self.max_new_tokens, self.batch_size, self.max_tiles, self.tensor_parallel,
               self.pipeline_parallel) < 1:
            raise ValueError("max_new_tokens, batch_size, max_tiles, tensor_parallel and pipeline_parallel must be >= 1")
        if self.device not in ("auto", "cpu", "cuda") or self.dtype not in ("auto", "fp32", "bf16"):
            raise ValueError(f"device {self.device!r} / dtype {self.dtype!r}: use auto|cpu|cuda and auto|fp32|bf16")
        if self.v2pe_delta is not None and not 0 < self.v2pe_delta <= 1:
            raise ValueError(f"v2pe_delta ({self.v2pe_delta}) must be in (0, 1]")
        if self.transformer_impl not in ("local", "transformer_engine"):
            raise ValueError(f"transformer_impl {self.transformer_impl!r}: use local | transformer_engine")

    @property
    def model_parallel(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

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


def request_encoder(cfg: VLMConfig, tokenizer: ChatTokenizer, config: GenerationConfig) -> RequestEncoder:
    """The one encoder of both backends: greedy, the InternVL3 system prompt, per-image tiling."""
    return RequestEncoder(cfg, tokenizer, max_tiles=config.max_tiles, multi_image="each",
                          sampling=SamplingParams(temperature=0.0, max_new_tokens=config.max_new_tokens))


def response_text(tokenizer: ChatTokenizer, token_ids: Sequence[int]) -> str:
    """The text before the first ``<|im_end|>``, decoded as InternVL's ``chat`` decodes it:
    special tokens (padding, a stray ``<|im_start|>``...) left out."""
    ids = list(token_ids)
    end = tokenizer.token_id(IM_END)
    if end in ids:
        ids = ids[:ids.index(end)]
    pad = tokenizer.pad_id
    return tokenizer.backend.decode([t for t in ids if t != pad], skip_special_tokens=True)


class TransformersBackend:
    """``InternVLForConditionalGeneration`` from a transformers-layout folder (``config.json`` with
    ``model_type: internvl`` and the tokenizer files), left-padded batches."""

    name = "transformers"

    def __init__(self, checkpoint: str | Path, config: GenerationConfig = GenerationConfig()) -> None:
        import json

        from transformers import InternVLForConditionalGeneration

        from megatron_fleming.model.config import VLMConfig

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
        self.items_per_call = config.batch_size
        self.device = config.torch_device()
        self.dtype = config.torch_dtype(self.device)
        self.model = InternVLForConditionalGeneration.from_pretrained(folder, dtype=self.dtype).to(self.device).eval()
        self.tokenizer = load_tokenizer(folder)
        self.encoder = request_encoder(VLMConfig.from_hf(self.model.config), self.tokenizer, config)
        self.eos = self.tokenizer.token_id(IM_END)
        self.pad = self.tokenizer.pad_id
        self.info = {"source": f"hf:{folder}"}

    @torch.no_grad()
    def generate(self, requests: Sequence[Request]) -> list[str]:
        out: list[str] = []
        bs = self.config.batch_size
        for start in range(0, len(requests), bs):
            out.extend(self._batch(requests[start:start + bs]))
        return out

    def _batch(self, requests: Sequence[Request]) -> list[str]:
        prepared = [self.encoder.prepare(r) for r in requests]
        width = max(len(p.input_ids) for p in prepared)
        ids = torch.full((len(prepared), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(prepared), width), dtype=torch.long)
        for row, p in enumerate(prepared):
            ids[row, width - len(p.input_ids):] = torch.tensor(p.input_ids)
            mask[row, width - len(p.input_ids):] = 1
        pixels = [p.pixel_values for p in prepared if p.pixel_values is not None]
        # The encoder's tiles are uint8 (our model normalises them itself); transformers' model
        # takes ImageNet-normalised floats, normalised here by the same function.
        kwargs = {}
        if pixels:
            tiles = normalize_pixels(torch.cat(pixels).to(self.device))
            kwargs["pixel_values"] = tiles.to(self.dtype)
        generated = self.model.generate(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device), max_new_tokens=self.config.max_new_tokens,
            do_sample=False, num_beams=1, eos_token_id=self.eos, pad_token_id=self.pad,
            suppress_tokens=[self.tokenizer.image_context_id], **kwargs)
        return [response_text(self.tokenizer, row) for row in generated[:, width:].tolist()]


class FlemingBackend:
    """Our ``GenerationEngine`` on this rank's stage of a loaded checkpoint (call after
    ``initialize_parallel``; every rank of the launch calls ``generate`` with the same requests).

    Data-parallel replicas each answer every dp-th request of a call; the responses are gathered
    over the data-parallel group, so every rank returns all of them."""

    name = "fleming"

    def __init__(self, loaded: LoadedModel, config: GenerationConfig) -> None:
        from megatron.core import parallel_state

        from megatron_fleming.generate.cli import CHUNK_BATCHES
        from megatron_fleming.generate.engine import GenerationEngine

        self.tokenizer = loaded.tokenizer
        self.encoder = request_encoder(loaded.cfg, loaded.tokenizer, config)
        self.engine = GenerationEngine(loaded.model, self.encoder, end_ids=(loaded.tokenizer.token_id(IM_END),),
                                       batch_size=config.batch_size)
        self.dp = parallel_state.get_data_parallel_world_size()
        self.dp_rank = parallel_state.get_data_parallel_rank()
        self.dp_group = parallel_state.get_data_parallel_group_gloo() if self.dp > 1 else None
        # As `fleming generate`: 16 batches a replica at once, sorted by prompt length inside.
        self.items_per_call = config.batch_size * self.dp * CHUNK_BATCHES
        self.info = {"source": loaded.source, "v2pe_delta": loaded.cfg.v2pe_delta,
                     "tensor_parallel": config.tensor_parallel, "pipeline_parallel": config.pipeline_parallel,
                     "data_parallel": self.dp, "transformer_impl": config.transformer_impl}

    def generate(self, requests: Sequence[Request]) -> list[str]:
        mine = list(requests[self.dp_rank::self.dp])
        texts = [response_text(self.tokenizer, r.token_ids) for r in self.engine.generate(mine)]
        if self.dp == 1:
            return texts
        parts: list[list[str] | None] = [None] * self.dp
        torch.distributed.all_gather_object(parts, texts, group=self.dp_group)
        out: list[str] = [""] * len(requests)
        for replica, part in enumerate(parts):
            out[replica::self.dp] = part
        return out


def load_fleming(*, hf: Path | None, mcore: Path | None, config: GenerationConfig) -> FlemingBackend:
    """This rank's ``FlemingBackend``; ``initialize_parallel`` with ``parallel_config(config)`` first."""
    from megatron_fleming.generate.loading import load_hf, load_mcore

    par = parallel_config(config)
    loaded = load_hf(hf, par, config.v2pe_delta) if hf is not None else load_mcore(mcore, par, config.v2pe_delta)
    return FlemingBackend(loaded, config)


def parallel_config(config: GenerationConfig):
    from megatron_fleming.model.config import ParallelConfig

    device = config.torch_device()
    dtype = {torch.float32: "fp32", torch.bfloat16: "bf16"}[config.torch_dtype(device)]
    return ParallelConfig(tensor_parallel=config.tensor_parallel, pipeline_parallel=config.pipeline_parallel,
                          device=device.type, dtype=dtype, transformer_impl=config.transformer_impl)


def check_backend(name: str, *, hf: Path | None, mcore: Path | None, config: GenerationConfig) -> None:
    """Refuse a combination the backend ``name`` cannot honour, before anything is loaded."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    if (hf is None) == (mcore is None):
        raise ValueError("give exactly one of --hf and --mcore")
    if name == "transformers":
        if hf is None:
            raise ValueError("--backend transformers needs --hf DIR (a transformers-layout InternVL folder); "
                             "for a Megatron checkpoint use --backend fleming, or convert it with "
                             "`fleming convert mcore-to-hf --layout transformers` first")
        unsupported = [flag for flag, used in (
            ("--tp", config.tensor_parallel != 1), ("--pp", config.pipeline_parallel != 1),
            ("--v2pe-delta", config.v2pe_delta not in (None, 1.0)),
            ("--transformer-impl", config.transformer_impl != "local")) if used]
        if unsupported:
            raise ValueError(f"--backend transformers runs one process without V2PE: {', '.join(unsupported)} "
                             "are the fleming engine's settings")


def make_backend(name: str, *, hf: Path | None, mcore: Path | None, config: GenerationConfig) -> Backend:
    """The backend ``name`` in this process (fleming: on ranks already initialised)."""
    check_backend(name, hf=hf, mcore=mcore, config=config)
    if name == "transformers":
        return TransformersBackend(hf, config)
    return load_fleming(hf=hf, mcore=mcore, config=config)
