"""Dedup throughput against a plain datasketch loop, same process, same data, equal recall.

Data (seeded): N synthetic English QA records (question template + 25-60 word answer drawn from a
Zipf vocabulary), 5% of them planted paraphrases of another record (case, punctuation and one
word changed: word-3-gram Jaccard about 0.8-0.9); M of the records carry a procedural image, 5%
of those planted copies of another record's image (JPEG q85, resize 0.9, 3% crop, in turn).

Timed in CPU seconds of this process (``time.process_time``: the machine is shared, and wall
time would measure the neighbours), one core, after importing datasketch for both sides:
  * baseline: the plain loop DESIGN.md names, over the N texts: per record ``MinHash(128)``,
    ``update_batch`` of its word 3-shingles, ``MinHashLSH(0.7).query`` then ``.insert``;
  * ours: ``deduplicate`` over the same N records as ``SampleSummary``s with the M images'
    signatures (exact image, near image, near text stages), plus the text stage alone;
  * image signatures per second (done once per image in the conversion workers, reported apart).
Recall is on the planted pairs: baseline = the paraphrase's query returned its original;
ours = the paraphrase was dropped as a duplicate of its original (or vice versa).

    .venv/bin/python bench/bench_dedup.py [--scale 1.0]   # 1.0 = 100,000 records, 20,000 images
"""

from __future__ import annotations

import argparse
import io
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core, as the build's workers run

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from datakit.dedup.config import DedupConfig  # noqa: E402
from datakit.dedup.image_hash import signature  # noqa: E402
from datakit.dedup.stages import NearTextDedup, deduplicate  # noqa: E402
from datakit.dedup.summary import SampleSummary  # noqa: E402
from datakit.dedup.text_minhash import tokens  # noqa: E402

QUESTIONS = ["Describe the findings.", "What does this image show?", "Summarise the report.", "What is seen here?"]


def make_texts(n: int, seed: int) -> tuple[list[str], list[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    syll = ["ra", "mo", "ti", "ne", "ka", "lu", "pe", "so", "vi", "da", "go", "shi", "ber", "tan", "lek", "um"]
    vocab = sorted({"".join(rng.choice(syll, int(rng.integers(1, 4)))) for _ in range(20000)})
    p = 1.0 / np.arange(1, len(vocab) + 1)
    words = rng.choice(len(vocab), size=(n, 60), p=p / p.sum())
    lengths = rng.integers(25, 61, n)
    texts = [f"{QUESTIONS[k % 4]}\n" + " ".join(vocab[w] for w in words[k, : lengths[k]]) for k in range(n)]
    planted = []
    for k in rng.choice(n // 2, n // 20, replace=False).tolist():
        dst = n // 2 + k
        ws = texts[k].split()
        ws[len(ws) // 2] = "zzplanted"
        texts[dst] = ", ".join(ws).upper()
        planted.append((k, dst))
    return texts, planted


def make_images(m: int, seed: int) -> tuple[list[Image.Image], list[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(m):
        field = Image.fromarray(rng.normal(0, 1, (6, 6)).astype(np.float32), "F").resize((96, 96), Image.BICUBIC)
        a = np.asarray(field) + 0.15 * rng.normal(0, 1, (96, 96))
        images.append(Image.fromarray(((a - a.min()) / np.ptp(a) * 255).astype(np.uint8), "L"))
    planted = []
    for n_done, k in enumerate(rng.choice(m // 2, m // 20, replace=False).tolist()):
        im, dst = images[k], m // 2 + k
        if n_done % 3 == 0:
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
            copy = Image.open(io.BytesIO(buf.getvalue()))
        elif n_done % 3 == 1:
            copy = im.resize((86, 86), Image.LANCZOS)
        else:
            copy = im.crop((3, 3, 96, 96))
        images[dst] = copy
        planted.append((k, dst))
    return images, planted


def baseline(texts: list[str]) -> tuple[float, dict[int, list[str]], dict[int, list[str]]]:
    """The plain loop; returns its time, its LSH hits, and (untimed) the hits whose estimated
    Jaccard similarity reaches the threshold, the decision rule the stage applies."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=0.7, num_perm=128)
    found: dict[int, list[str]] = {}
    sketches = []
    t = time.process_time()
    for k, text in enumerate(texts):
        toks = tokens(text, "en")
        m = MinHash(num_perm=128)
        m.update_batch([" ".join(toks[i : i + 3]).encode() for i in range(max(1, len(toks) - 2))])
        hits = lsh.query(m)
        if hits:
            found[k] = hits
        lsh.insert(str(k), m)
        sketches.append(m)
    elapsed = time.process_time() - t
    checked = {k: [h for h in hits if sketches[k].jaccard(sketches[int(h)]) >= 0.7] for k, hits in found.items()}
    return elapsed, found, checked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 100,000 records and 20,000 images")
    args = ap.parse_args()
    n, m = int(100_000 * args.scale), int(20_000 * args.scale)
    import datasketch  # noqa: F401  (import cost is paid once, outside both timings)
    texts, text_pairs = make_texts(n, 0)
    images, image_pairs = make_images(m, 1)

    t = time.process_time()
    sigs = [signature(im) for im in images]
    t_sig = time.process_time() - t
    sig_of = {f"img{k}": s for k, s in enumerate(sigs)}
    summaries = [
        SampleSummary(key=f"r{k:06d}", group=f"r{k:06d}", source="synthetic", record_uid=f"synthetic:{k}", lang="en",
                      question_type="caption", text=texts[k], media_sha256=(f"img{k}",) if k < m else ())
        for k in range(n)
    ]

    t = time.process_time()
    result = deduplicate(summaries, sig_of, DedupConfig(decontam="none"), ["synthetic"])
    t_all = time.process_time() - t
    t = time.process_time()
    text_rows = NearTextDedup(DedupConfig().near_text).run(summaries, {}, {"synthetic": 0})
    t_text = time.process_time() - t
    t_base, base_found, base_checked = baseline(texts)

    text_dropped = {(r.key, r.duplicate_of) for r in text_rows}

    def ours_recall(pairs, rows) -> float:
        return float(np.mean([(f"r{b:06d}", f"r{a:06d}") in rows or (f"r{a:06d}", f"r{b:06d}") in rows for a, b in pairs]))

    base_recall = float(np.mean([str(a) in base_found.get(b, []) for a, b in text_pairs]))
    checked_recall = float(np.mean([str(a) in base_checked.get(b, []) for a, b in text_pairs]))
    image_rows = {(r.key, r.duplicate_of) for r in result.drops if r.stage in ("exact_image", "near_image")}
    print(f"data: {n} QA records ({len(text_pairs)} planted paraphrases), {m} images ({len(image_pairs)} planted copies)")
    print(f"image signatures:  {m / t_sig:10.0f} images/s  (once per image, in the conversion workers)")
    print(f"baseline loop:     {n / t_base:10.0f} records/s  recall {base_recall:.4f} on LSH hits, "
          f"{checked_recall:.4f} once hits are checked on Jaccard >= 0.7  (records with a hit: {len(base_found)})")
    print(f"ours, text stage:  {n / t_text:10.0f} records/s  recall {ours_recall(text_pairs, text_dropped):.4f}  "
          f"ratio {t_base / t_text:6.1f}x  (dropped {len(text_rows)})")
    print(f"ours, all stages:  {n / t_all:10.0f} records/s  image recall {ours_recall(image_pairs, image_rows):.4f}  "
          f"ratio {t_base / t_all:6.1f}x  (text recall here is lower by design: a text whose original "
          f"left with an image duplicate stays)")
    for st in result.stats:
        print(f"  {st.stage:<12} in {st.inputs}  dropped {st.dropped}  clusters {st.clusters}")


if __name__ == "__main__":
    main()
