"""Dedup and decontamination at merge time, across all sources of a recipe (DESIGN.md).

* ``image_hash``: one ``ImageSignature`` per decoded image (exact pixel hash, perceptual hashes
  over crop views), computed in the conversion worker so pixels are decoded once.
* ``image_index``: exact Hamming-radius search over many signatures (multi-index hashing).
* ``text_minhash``: batch MinHash + LSH for question/answer text (datasketch-compatible).
* ``clusters``: the deterministic keep/drop rule every stage shares.
* ``summary``: ``SampleSummary`` in, ``DropRow`` out, ``StageStats``.
* ``stages``: the image and text stages; ``deduplicate`` chains them.
* ``benchmarks`` / ``decontam``: the evaluation-image registry and the ``contaminated`` stage.
* ``config``: the recipe's ``dedup:`` section. ``report``: the closing report and plot.

Nothing here is imported by ``datakit`` itself; import the submodules you need.
"""
