"""`GenerationEngine`: batched decoding of `FlemingVLM` with a KV cache and V2PE positions.

Per batch of requests (sorted by prompt length, so a batch holds similar lengths):

1. Positions: every row's token buffer (prompt, then the slots its new tokens will take) goes
   through `model.v2pe.v2pe_position_ids`, the function training uses. Generated tokens are never
   `<IMG_CONTEXT>`, so their positions do not depend on which tokens they turn out to be: the
   first continues from the prompt's last position + 1 (after a trailing image, from its ceiling
   + 1), exactly as training would place the finished sequence.
2. Prefill: the vision encoder and projector run once over all the batch's tiles (`embed`);
   the first `min(prompt lengths)` tokens of every row go through the decoder in one pass.
3. Decode: one token per row per step. Rows share buffer indices (right padding): a row whose
   prompt is longer than the batch's shortest feeds its next prompt token (its embedding, image
   features included, kept from step 2) until its prompt is used up, and samples after that. No
   padding ever sits inside a row, so attention needs no padding mask: causal at prefill,
   none at decode — what megatron's static path does with local layers and with Transformer
   Engine alike.

KV cache: megatron-core's own `StaticInferenceContext`. Its attention stores keys *before*
rotary and re-rotates the whole cached prefix each step with the rotary embedding of the
positions it is given, so our fp32 V2PE positions pass through unrounded (megatron's dynamic
engine looks RoPE up by integer position and cannot). `use_kv_cache=False` recomputes the whole
sequence every step instead (the benchmark's baseline; image features are still reused).

Parallelism: tensor parallel (gathered logits; one rank samples and broadcasts) and pipeline
parallel (hidden states sent stage to stage each step, see `stages`). Sequence and context
parallelism are refused: a one-token step cannot be split over the sequence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from megatron.core.inference.contexts import StaticInferenceContext

from megatron_fleming.generate.requests import PreparedRequest, Request, Result
from megatron_fleming.generate.sampling import TokenMask, sample
from megatron_fleming.generate.stages import ReplicaLinks
from megatron_fleming.model.parallel import unwrap
from megatron_fleming.model.v2pe import v2pe_position_ids

if TYPE_CHECKING:
    from megatron_fleming.generate.inputs import RequestEncoder


class GenerationEngine:
    """Generates for lists of requests with one model replica (this rank's pipeline stage).

    `encoder` turns `Request`s into model inputs and decodes the text of results; without one,
    `run` takes `PreparedRequest`s and results carry no text. `end_ids`: tokens that end a
    sequence (the checkpoint's `<|im_end|>` and EOS); `v2pe_delta` None uses the model config's.
    `keep_logits` returns each step's logits (tests).
    """

    def __init__(self, model: torch.nn.Module, encoder: RequestEncoder | None, *,
                 end_ids: Sequence[int], batch_size: int = 8, v2pe_delta: float | None = None,
                 use_kv_cache: bool = True, keep_logits: bool = False) -> None:
        self.model = unwrap(model)
        cfg = self.model.cfg
        if self.model.config.sequence_parallel or self.model.config.context_parallel_size > 1:
            raise ValueError("generation needs sequence_parallel=False and context_parallel=1 "
                             "(one-token decode steps cannot be split over the sequence)")
        if batch_size < 1:
            raise ValueError(f"batch_size ({batch_size}) must be >= 1")
        self.delta = cfg.v2pe_delta if v2pe_delta is None else float(v2pe_delta)
        if not 0 < self.delta <= 1:
            raise ValueError(f"v2pe_delta ({self.delta}) must be in (0, 1]")
        self.encoder = encoder
        self.end_ids = frozenset(int(i) for i in end_ids)
        self.batch_size = batch_size
        self.use_kv_cache = use_kv_cache
        self.keep_logits = keep_logits
        self.image_id = cfg.image_context_token_id
        self.mask = TokenMask(cfg.language.vocab_size, (self.image_id,))
        self.filler = 0 if self.image_id != 0 else 1  # any non-image id: placeholder slots
        param = next(self.model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.hidden_size = cfg.language.hidden_size
        self.links = ReplicaLinks(self.device)

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        """Results in request order; a bad request raises `RequestError` before any generation."""
        if self.encoder is None:
            raise ValueError("this engine has no RequestEncoder: give run() PreparedRequests")
        return self.run([self.encoder.prepare(r) for r in requests])

    def run(self, prepared: Sequence[PreparedRequest]) -> list[Result]:
        order = sorted(range(len(prepared)), key=lambda i: len(prepared[i].input_ids))
        results: list[Result | None] = [None] * len(prepared)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(order), self.batch_size):
                    chunk = order[start:start + self.batch_size]
                    for i, result in zip(chunk, self._batch([prepared[i] for i in chunk])):
                        results[i] = result
        finally:
            self.model.train(was_training)
        return results

    # ------------------------------------------------------------------ one batch

    def _batch(self, batch: list[PreparedRequest]) -> list[Result]:
        rows = len(batch)
        lengths = [len(p.input_ids) for p in batch]
        budgets = [p.sampling.max_new_tokens for p in batch]
        total = max(n + b for n, b in zip(lengths, budgets))
        ids = torch.full((rows, total), self.filler, dtype=torch.long, device=self.device)
        for i, p in enumerate(batch):
            ids[i, :lengths[i]] = torch.tensor(p.input_ids, dtype=torch.long)
        positions = v2pe_position_ids(ids, self.image_id, self.delta)
        shortest, longest = min(lengths), max(lengths)
        prompt_embeddings = self._prompt_embeddings(ids[:, :longest], batch)
        generators = [None if p.sampling.greedy else torch.Generator().manual_seed(p.seed)
                      for p in batch]
        in_prompt_at = torch.tensor(lengths, device=self.device)

        context = StaticInferenceContext(rows, total) if self.use_kv_cache else None
        embedded = None if prompt_embeddings is None else prompt_embeddings[:shortest]
        out = self._forward(ids[:, :shortest], embedded, positions[:, :shortest], context)
        tokens: list[list[int]] = [[] for _ in batch]
        logprobs: list[list[float]] = [[] for _ in batch]
        kept: list[list[torch.Tensor]] = [[] for _ in batch]
        finish: list[str | None] = [None] * rows
        t = shortest
        while True:
            choosing = [i for i in range(rows) if finish[i] is None and t >= lengths[i]]
            chosen = self._choose(out, choosing, batch, generators, kept)
            for i in choosing:
                token = int(chosen[0, i])
                tokens[i].append(token)
                logprobs[i].append(float(chosen[1, i]))
                ids[i, t] = token
                if token in self.end_ids and not batch[i].sampling.ignore_eos:
                    finish[i] = "stop"
                elif len(tokens[i]) == budgets[i]:
                    finish[i] = "length"
            if all(f is not None for f in finish):
                break
            step = None
            if prompt_embeddings is not None:
                prompt_rows = in_prompt_at > t
                step_ids = ids[:, t:t + 1].masked_fill(prompt_rows[:, None], self.filler)
                step = self.model.embed(step_ids, None)
                if t < longest and bool(prompt_rows.any()):
                    step[:, prompt_rows] = prompt_embeddings[t:t + 1, prompt_rows]
            if context is not None:
                out = self._forward(ids[:, t:t + 1], step, positions[:, :t + 1], context)
            else:
                if step is not None:
                    embedded = torch.cat([embedded, step])
                out = self._forward(ids[:, :t + 1], embedded, positions[:, :t + 1], None)
            t += 1
        return [self._result(p, tokens[i], logprobs[i], finish[i], kept[i])
                for i, p in enumerate(batch)]

    def _prompt_embeddings(self, ids: torch.Tensor,
                           batch: list[PreparedRequest]) -> torch.Tensor | None:
        """[longest prompt, rows, hidden] on the first stage (vision runs here, once); else None."""
        if not self.links.first:
            return None
        tiles = [p.pixel_values for p in batch if p.pixel_values is not None]
        pixels = None
        if tiles:
            pixels = torch.cat(tiles).to(self.device)
            if pixels.is_floating_point():
                pixels = pixels.to(self.dtype)
        return self.model.embed(ids, pixels)

    def _forward(self, step_ids: torch.Tensor, decoder_input: torch.Tensor | None,
                 positions: torch.Tensor,
                 context: StaticInferenceContext | None) -> torch.Tensor | None:
        """This stage's share of one step; the last stage returns logits [rows, s or 1, vocab]."""
        rows, length = step_ids.shape
        if not self.links.first:
            self.model.set_input_tensor(
                self.links.receive_hidden((length, rows, self.hidden_size), self.dtype))
        out = self.model(step_ids, None, position_ids=positions, decoder_input=decoder_input,
                         inference_context=context, runtime_gather_output=True)
        if context is not None:
            context.sequence_len_offset += length
        if not self.links.last:
            self.links.send_hidden(out)
            return None
        return out

    def _choose(self, out: torch.Tensor | None, choosing: list[int], batch: list[PreparedRequest],
                generators: list, kept: list[list[torch.Tensor]]) -> torch.Tensor:
        """[2, rows] (token, log-prob) of the rows choosing now (-1 elsewhere), on every rank."""
        chosen = None
        if self.links.samples:
            chosen = torch.full((2, len(batch)), -1.0, dtype=torch.float64, device=self.device)
            if choosing:
                logits = out[choosing, -1].float()
                tokens, logprobs = sample(logits, self.mask, [batch[i].sampling for i in choosing],
                                          [generators[i] for i in choosing])
                index = torch.tensor(choosing, device=self.device)
                chosen[0, index] = tokens.double()
                chosen[1, index] = logprobs.double()
                if self.keep_logits:
                    for i in choosing:
                        kept[i].append(out[i, -1].float().cpu())
        return self.links.share(chosen, len(batch)).cpu()

    def _result(self, p: PreparedRequest, tokens: list[int], logprobs: list[float],
                finish: str, kept: list[torch.Tensor]) -> Result:
        body = tokens[:-1] if finish == "stop" else tokens
        text = None if self.encoder is None else self.encoder.tokenizer.decode(body)
        return Result(id=p.id, token_ids=tokens, logprobs=logprobs, finish_reason=finish,
                      prompt_tokens=len(p.input_ids), text=text,
                      logits=torch.stack(kept) if kept else None)
