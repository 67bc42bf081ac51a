"""The tokenizer, without a hub: a local Qwen2.5 / InternVL directory, or a tiny BPE for tests.

Both become a `ChatTokenizer`, a thin wrapper over a `tokenizers.Tokenizer` (the fast Rust
tokenizer; what transformers' fast tokenizers wrap too), so prompt rendering and the task encoder
see one interface. The tiny tokenizer is byte-level BPE with Qwen2's pre-tokenizer split and the
special tokens the prompt uses, so the prompt code runs the same path in tests as in real runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|endoftext|>"  # Qwen2.5's pad token
THINK_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")
#: Tokens the prompt layout needs; a tokenizer without them cannot render InternVL prompts.
REQUIRED_TOKENS = (PAD, IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT)
SPECIAL_TOKENS = REQUIRED_TOKENS + THINK_TOKENS

# Qwen2's pre-tokenizer split (from its tokenizer.json): contractions, letter runs with one
# leading non-letter, single digits, punctuation runs, newlines, whitespace.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass(frozen=True)
class ChatTokenizer:
    """Encode / decode text; look up the special tokens of the ChatML + InternVL image layout."""

    backend: Tokenizer

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text (no BOS/EOS added; added tokens in the text are matched)."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def token_id(self, token: str) -> int:
        found = self.backend.token_to_id(token)
        if found is None:
            raise KeyError(f"token {token!r} is not in the vocabulary")
        return found

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        return self.token_id(PAD)

    @property
    def image_context_id(self) -> int:
        return self.token_id(IMG_CONTEXT)

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json``; `load_tokenizer(directory)` reads it back."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(out / "tokenizer.json"))
        return out

    def check_required(self) -> None:
        missing = [t for t in REQUIRED_TOKENS if self.backend.token_to_id(t) is None]
        if missing:
            raise ValueError(f"tokenizer lacks {missing}: use an InternVL tokenizer directory "
                             "(Qwen2.5's plus <img>, </img>, <IMG_CONTEXT>)")


def load_tokenizer(directory: str | Path) -> ChatTokenizer:
    """A local tokenizer directory (never a hub name): ``tokenizer.json`` if present, else
    whatever transformers' ``AutoTokenizer`` reads there (vocab.json + merges.txt, added tokens)."""
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory {path} does not exist; runs load a local "
                                "copy of the InternVL / Qwen2.5 tokenizer, never a hub name")
    if (path / "tokenizer.json").is_file():
        tok = ChatTokenizer(Tokenizer.from_file(str(path / "tokenizer.json")))
    else:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
        tok = ChatTokenizer(hf.backend_tokenizer)
    tok.check_required()
    return tok


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 600) -> ChatTokenizer:
    """Byte-level BPE trained on `texts`, with `SPECIAL_TOKENS` added: for tests and CPU demos."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(texts, trainer)
    return ChatTokenizer(backend)
