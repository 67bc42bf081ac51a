"""Generation from `FlemingVLM`: the engine GRPO rollouts and evaluation stand on.

    loaded = load_hf(folder, par)            # or load_mcore(folder, par); after initialize_parallel
    encoder = RequestEncoder(loaded.cfg, loaded.tokenizer, max_tiles=12)
    engine = GenerationEngine(loaded.model, encoder, end_ids=loaded.end_ids, batch_size=8)
    results = engine.generate([Request(id="q1", prompt="<image>\\nWhat is shown?",
                                       images=("scan.png",),
                                       sampling=SamplingParams(temperature=0.9, max_new_tokens=512))])
    # results[0].token_ids, .logprobs, .text, .finish_reason

Modules: `requests` (Request / Result, JSONL), `inputs` (prompt rendering and tiling, the
training task encoder's), `sampling` (greedy / temperature / top-k / top-p, log-prob convention,
never-sampled ids), `engine` (KV cache, V2PE positions, batches, TP/PP), `stages` (rank links),
`logprobs` (trainer-side log-probs of given tokens), `loading` (checkpoints), `cli`.
See docs/generation.md.
"""

import importlib

_EXPORTS = {
    "GenerationEngine": "engine", "PreparedRequest": "requests", "RequestEncoder": "inputs",
    "LoadedModel": "loading", "load_hf": "loading", "load_mcore": "loading",
    "sequence_logprobs": "logprobs", "token_logprobs": "logprobs", "Request": "requests",
    "RequestError": "requests", "Result": "requests", "SamplingParams": "sampling",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Lazy: `fleming generate` launches ranks without importing megatron-core itself."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
