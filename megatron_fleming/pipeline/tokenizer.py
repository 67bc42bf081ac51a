"""The tiny byte-level BPE every stage of a CPU pipeline shares.

    python -m megatron_fleming.pipeline.tokenizer --out DIR --vocab 512 BUILD [BUILD ...]

`fleming train` with ``data.tokenizer.tiny_bpe_vocab`` trains a BPE on its own data, so stages
on different data would get different vocabularies and a stage would read its predecessor's
weights through the wrong one. The pipeline trains one BPE, once, on the texts of every named
build (each turn, each interleaved document, in file order) plus the chat template's system
prompt, which every training and evaluation prompt carries; every stage reads it
(``data.tokenizer.path``). Same builds -> same tokenizer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from megatron_fleming.data.prompt import INTERNVL3_SYSTEM_PROMPT
from megatron_fleming.data.tokenizer import train_tiny_tokenizer
from megatron_fleming.train.loader import conversation_texts


def texts(builds: list[Path]):
    yield INTERNVL3_SYSTEM_PROMPT
    for build in builds:
        yield from conversation_texts(build)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m megatron_fleming.pipeline.tokenizer", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for tokenizer.json")
    p.add_argument("--vocab", type=int, required=True, help="vocabulary size, special tokens included")
    p.add_argument("builds", nargs="+", type=Path, help="datakit build folders")
    args = p.parse_args(argv)
    tokenizer = train_tiny_tokenizer(texts(args.builds), vocab_size=args.vocab)
    tokenizer.save(args.out)
    print(f"trained a {tokenizer.vocab_size}-token BPE on {len(args.builds)} builds -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
