"""Stage hand-off: what a run that starts from another run's weights (``checkpoint.init_from``)
must share with it.

A stage starts from the previous stage's final weights only — no optimizer, scheduler, RNG or
data position (Megatron's "load for fine-tuning"): `Checkpointer.init_model` loads the model
state and nothing else, and the iteration count starts at 0. What the weights cannot carry is
the vocabulary they were trained with: an embedding row means a token only through its
tokenizer, and a stage that read its predecessor's weights through another tokenizer (a tiny BPE
retrained on its own data, another tokenizer folder) would train on garbage without an error.
`check_tokenizer` refuses that, naming both.
"""

from __future__ import annotations

from pathlib import Path

from megatron_fleming.data.tokenizer import ChatTokenizer, load_tokenizer

RUN_CONFIG = "config.yaml"
TINY_TOKENIZER_DIR = "tokenizer"  # as train.loader writes it
CONVERTED_ASSETS = "hf_assets"  # as `fleming convert hf-to-mcore` writes them


def source_tokenizer(init_from: str | Path) -> tuple[ChatTokenizer, Path] | None:
    """The tokenizer the weights of ``init_from`` were trained or converted with, and where it
    lives; None when the folder does not say (a bare dist-checkpoint)."""
    import yaml

    folder = Path(init_from)
    for run in (folder, folder.parent):
        config = run / RUN_CONFIG
        if config.is_file():
            section = (yaml.safe_load(config.read_text()) or {}).get("data", {}).get("tokenizer", {}) or {}
            where = Path(section["path"]) if section.get("path") else run / TINY_TOKENIZER_DIR
            return (load_tokenizer(where), where) if where.is_dir() else None
    assets = folder / CONVERTED_ASSETS
    if (assets / "tokenizer.json").is_file():
        return load_tokenizer(assets), assets
    return None


def check_tokenizer(tokenizer: ChatTokenizer, init_from: str | Path, setting: str = "data.tokenizer") -> None:
    """Refuse a run whose tokenizer differs from the one ``init_from``'s weights were trained with."""
    found = source_tokenizer(init_from)
    if found is None:
        return
    theirs, where = found
    if theirs.backend.get_vocab(with_added_tokens=True) != tokenizer.backend.get_vocab(with_added_tokens=True):
        raise ValueError(
            f"checkpoint.init_from {init_from} was trained with the tokenizer in {where} ({theirs.vocab_size} "
            f"tokens) but this run's {setting} gives another vocabulary ({tokenizer.vocab_size} tokens): its "
            f"embeddings would be read as other tokens. Set {setting}.path={where} (and "
            f"{setting}.tiny_bpe_vocab=null)")
