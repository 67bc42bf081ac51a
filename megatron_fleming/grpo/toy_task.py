"""A verifiable toy task for GRPO tests and benchmarks: which letter is drawn in the image?

Each sample is a 56 px image (the tiny model's tile) with one of a few block letters drawn in
white strokes at a seeded position and thickness, asked as multiple choice with the options in a
fixed order (``A. X``, ``B. O``, ...); the reference is the option letter. Written as an Energon
dataset of datakit samples (the GRPO set's format), so the real loader and task encoder read it.

``label_noise=q`` replaces the reference by a uniformly drawn option letter in a fraction q of
the samples: supervised training on such a set makes a model that answers in the format (one
option letter, then the turn end) and is right only about ``1 - q + q / options`` of the time,
a start that GRPO on clean rewards can improve on.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from PIL import Image, ImageDraw

from datakit import energon_format
from datakit.record import Media
from datakit.sample import Sample
from datakit.shard_writer import AtomicTarWriter

LETTERS = "ABCDEFGH"
STROKES = {  # block letters as line segments in a unit square (x right, y down)
    "X": [((0, 0), (1, 1)), ((1, 0), (0, 1))],
    "O": [((0, 0), (1, 0)), ((1, 0), (1, 1)), ((1, 1), (0, 1)), ((0, 1), (0, 0))],
    "T": [((0, 0), (1, 0)), ((0.5, 0), (0.5, 1))],
    "L": [((0, 0), (0, 1)), ((0, 1), (1, 1))],
    "H": [((0, 0), (0, 1)), ((1, 0), (1, 1)), ((0, 0.5), (1, 0.5))],
}


def draw_letter(letter: str, rng: random.Random, size: int = 56) -> bytes:
    """PNG bytes of `letter` drawn in a box of seeded size and place, strokes of seeded width."""
    image = Image.new("RGB", (size, size), (0, 0, 0))
    pen = ImageDraw.Draw(image)
    box = rng.uniform(0.7, 0.8) * size
    x0, y0 = rng.uniform(4, size - box - 4), rng.uniform(4, size - box - 4)
    width = rng.randint(6, 8)
    for (ax, ay), (bx, by) in STROKES[letter]:
        pen.line([(x0 + ax * box, y0 + ay * box), (x0 + bx * box, y0 + by * box)],
                 fill=(255, 255, 255), width=width)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write_letter_task(out_dir: str | Path, *, count: int, seed: int = 0,
                      shapes: str = "XOTL", label_noise: float = 0.0,
                      samples_per_shard: int = 256) -> Path:
    """An Energon dataset of `count` letter questions under `out_dir` (train split)."""
    unknown = set(shapes) - set(STROKES)
    if unknown or len(set(shapes)) != len(shapes) or not 2 <= len(shapes) <= len(LETTERS):
        raise ValueError(f"shapes {shapes!r}: 2 or more distinct letters of {''.join(STROKES)}")
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise ({label_noise}) must be in [0, 1]")
    out = Path(out_dir)
    rng = random.Random(seed)
    options = list(shapes)
    listing = "\n".join(f"{LETTERS[i]}. {shape}" for i, shape in enumerate(options))
    question = (f"<image>\nWhich letter is drawn in the image?\n{listing}\n"
                "Answer with the option's letter.")
    names: list[str] = []
    writer = None
    for index in range(count):
        if index % samples_per_shard == 0:
            if writer is not None:
                writer.close()
            names.append(f"grpo-{len(names):06d}.tar")
            writer = AtomicTarWriter(out / names[-1])
        shown = rng.randrange(len(options))
        noisy = rng.random() < label_noise
        letter = LETTERS[rng.randrange(len(options)) if noisy else shown]
        png = draw_letter(options[shown], rng)
        sample = Sample(
            key=f"letters-{index:06d}", source="toy_letters", modality="synthetic",
            task="letter_mcq", lang="en", group=f"letters-{index:06d}", question_type="mcq",
            conversation=[{"from": "human", "value": question}, {"from": "gpt", "value": letter}],
            answer=letter, media=[Media(data=png, ext="png", width=56, height=56)],
            options=options, provenance={"shown": options[shown], "label_noise": label_noise})
        writer.add_sample(sample.key, sample.shard_parts())
    writer.close()
    energon_format.write_dataset_yaml(out, "toy_letters")
    energon_format.prepare(out, names, split_patterns=[("train", "grpo-.*")])
    return out
