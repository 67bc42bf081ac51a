"""Multimodal C4 (Zhu et al. 2023, ``allenai/mmc4``; ODC-BY + Common Crawl terms): web documents
with images interleaved in their text, the stage-1 corpus of the paper.

Released layout (``docs/corpora.md``): document shards ``docs_shard_{N}_v2.jsonl.zip`` (fewer-faces:
``docs_no_face_shard_{N}_v2.jsonl.zip``, core: ``..._v3``), each zip holding one JSON Lines file;
images are URLs only, fetched by the release's ``scripts/download_images.py`` into one folder per
shard named by its number. This reader's layout (both are options)::

    mmc4/docs/docs_no_face_shard_0_v2.jsonl.zip      (or the unzipped .jsonl)
    mmc4/images/0/<image_name>                       (images_dir: "images/{shard}")

A document: ``url``, ``text_list`` (its sentences), ``image_info`` (``image_name``, ``raw_url``,
``matched_text_index``, ``matched_sim``, ``face_detections``), ``similarity_matrix``,
``could_have_url_duplicate``.

Decisions:

* Placement is MMC4's own similarity match: each image goes right before the sentence
  ``matched_text_index`` names (several images at one sentence keep their ``image_info`` order);
  ``similarity_matrix`` is not re-solved. ``min_similarity`` (default 0: keep every match; OpenFlamingo
  uses 0.24) drops weaker matches; at most ``max_images`` (default 6, as OpenFlamingo and VILA)
  are kept, the best matched first.
* **Trim rule**: an image that is missing on disk (a dead link the downloader skipped), has a
  ``matched_text_index`` outside the text, matches below ``min_similarity``, exceeds
  ``max_images`` or (at load) does not decode is removed from its document, which keeps its text;
  each sample's provenance counts them by reason. A document left with no image is rejected:
  ``missing_images`` (every image missing on disk) or ``no_matched_images`` (none usable),
  ``no_readable_images`` at load.
* Rows refused at discovery, named ``<docs file>:<line>``: ``bad_json``, ``non_utf8``,
  ``bad_document`` (missing or mistyped ``text_list``/``image_info``), ``empty_document`` (no
  text). A shard that cannot be opened is ``bad_archive``; an image no document of its shard
  names is ``image_without_document``.
* Text: sentences stripped, empty ones dropped; a literal ``<image>`` in the web text becomes
  ``<IMAGE>`` so markers stay one per image (VILA does the same). Documents sharing a URL share a
  split key (``could_have_url_duplicate``); near-duplicate texts are the merge's MinHash dedup.
* Images are read through the one normalisation (``docs/normalisation.md``; ``max_pixels``,
  ``max_side``). Every file under the top folder is a manifest row: the shards are read; an
  image on disk that its document trims is ``ignored`` as ``image_trimmed`` (the detail names the
  document row and the trim reason), one whose document is refused as
  ``image_of_refused_document``.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datakit.errors import Rejected
from datakit.record import LoadedRecord, RawRecord
from datakit.registry import register_source
from datakit.sample import IMAGE_TOKEN
from datakit.sources.base import Rejection, SourceReader, natural_key
from datakit.sources.dialogues import IMAGE_EXTS

ESCAPED_MARKER = "<IMAGE>"
_SHARD = re.compile(r"shard_(\d+)")


def _lines(path: Path) -> list[bytes]:
    """The JSON Lines of a shard, from a ``.jsonl`` or from the one file inside a ``.zip``
    (readers of the release take ``namelist()[0]``)."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            if not names:
                raise zipfile.BadZipFile("the archive holds no file")
            return zf.read(names[0]).splitlines()
    return path.read_bytes().splitlines()


@register_source
class Mmc4Reader(SourceReader):
    name = "mmc4"
    modality = "web"
    top_folder = "mmc4"
    options: dict[str, Any] = {
        "docs_glob": "docs/*.jsonl*",
        "images_dir": "images/{shard}",  # {shard}: the number in the shard's name; {stem}: its name
        "max_images": 6,
        "min_similarity": 0.0,
    }

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        n, sim = self.opts["max_images"], self.opts["min_similarity"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"source {self.name}: max_images must be a positive integer, got {n!r}")
        if not isinstance(sim, (int, float)) or isinstance(sim, bool) or not -1 <= sim <= 1:
            raise ValueError(f"source {self.name}: min_similarity must be a number in [-1, 1], got {sim!r}")
        self._sums: dict[str, str] = {}

    def _refuse(self, place: str, reason: str, detail: str = "") -> Rejection:
        return Rejection(source=self.name, record_id=place, path=place, reason=reason, detail=detail)

    def _shards(self) -> list[Path]:
        shards = [p for p in self.root.glob(self.opts["docs_glob"]) if p.name.endswith((".jsonl", ".jsonl.zip"))]
        return sorted(shards, key=lambda p: natural_key(p.name))

    def index_files(self) -> list[Path]:
        return self._shards()

    def input_exts(self) -> frozenset[str]:
        return IMAGE_EXTS | {".jsonl", ".zip"}

    def discover(self) -> Iterator[RawRecord | Rejection]:
        for path in self._shards():
            yield from self._discover_shard(path)

    def _discover_shard(self, path: Path) -> Iterator[RawRecord | Rejection]:
        rel = path.relative_to(self.root).as_posix()
        stem = path.name.split(".")[0]
        m = _SHARD.search(stem)
        images = self.root / self.opts["images_dir"].format(shard=m.group(1) if m else stem, stem=stem)
        on_disk = {p.name: p for p in images.iterdir() if p.is_file()} if images.is_dir() else {}
        named: set[str] = set()
        try:
            lines = _lines(path)
        except (OSError, zipfile.BadZipFile) as e:
            yield self._refuse(rel, "bad_archive", str(e))
            return
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            place = f"{rel}:{number}"
            try:
                doc = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield self._refuse(place, "non_utf8", f"byte {e.start}: {e.reason}")
                continue
            except ValueError as e:
                yield self._refuse(place, "bad_json", str(e))
                continue
            names = [i.get("image_name") for i in doc["image_info"] if isinstance(i, dict)] \
                if isinstance(doc, dict) and isinstance(doc.get("image_info"), list) else []
            named.update(names)
            item = self._document(place, f"{stem}:{number}", doc, on_disk)
            if isinstance(item, Rejection):
                for name in names:
                    if isinstance(name, str) and name in on_disk:
                        self.set_aside(on_disk[name], "image_of_refused_document", f"named by {place} ({item.reason})")
            yield item
        for name in sorted(set(on_disk) - named, key=natural_key):
            yield self.reject(f"{stem}/{name}", on_disk[name], "image_without_document")

    def _document(self, place: str, record_id: str, doc: Any, on_disk: dict[str, Path]) -> RawRecord | Rejection:
        if not isinstance(doc, dict) or not isinstance(doc.get("text_list"), list) \
                or not isinstance(doc.get("image_info"), list) \
                or not all(isinstance(s, str) for s in doc["text_list"]) \
                or not all(isinstance(i, dict) for i in doc["image_info"]):
            return self._refuse(place, "bad_document", "needs text_list (list of str) and image_info (list of objects)")
        sentences = [s.strip().replace(IMAGE_TOKEN, ESCAPED_MARKER) for s in doc["text_list"]]
        if not any(sentences):
            return self._refuse(place, "empty_document", "text_list holds no text")
        trimmed: Counter[str] = Counter()
        usable: list[tuple[float, int, str, int]] = []  # (similarity, image order, name, sentence)
        set_aside: list[tuple[str, str]] = []  # (image on disk, why it is not used)
        for order, info in enumerate(doc["image_info"]):
            name, index, sim = info.get("image_name"), info.get("matched_text_index"), info.get("matched_sim", 0.0)
            if not isinstance(name, str) or not name or "/" in name:
                trimmed["bad_image_info"] += 1
            elif name not in on_disk:
                trimmed["missing_image"] += 1
            elif not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(sentences):
                trimmed["bad_match_index"] += 1
                set_aside.append((name, "bad_match_index"))
            elif not isinstance(sim, (int, float)) or sim < self.opts["min_similarity"]:
                trimmed["below_similarity"] += 1
                set_aside.append((name, "below_similarity"))
            else:
                usable.append((float(sim), order, name, index))
        if not usable:
            all_missing = doc["image_info"] and trimmed["missing_image"] == len(doc["image_info"])
            reason = "missing_images" if all_missing or not doc["image_info"] else "no_matched_images"
            return self._refuse(place, reason, f"{len(doc['image_info'])} image(s): {dict(trimmed) or 'none listed'}")
        best = sorted(usable, key=lambda u: (-u[0], u[1]))[: self.opts["max_images"]]
        trimmed["over_max_images"] += len(usable) - len(best)
        set_aside += [(u[2], "over_max_images") for u in usable if u not in best]
        for name, why in set_aside:
            self.set_aside(on_disk[name], "image_trimmed", f"trimmed from {place}: {why}")
        kept = sorted(best, key=lambda u: (u[3], u[1]))  # document order: sentence, then image order
        url = str(doc.get("url") or "")
        return RawRecord(
            source=self.name, record_id=record_id, modality=self.modality,
            images=tuple(on_disk[name] for _, _, name, _ in kept),
            meta={"sentences": sentences, "placement": [u[3] for u in kept], "url": url, "row": place,
                  "trimmed": {k: v for k, v in sorted(trimmed.items()) if v},
                  "docs_file": place.rsplit(":", 1)[0],
                  "could_have_url_duplicate": bool(doc.get("could_have_url_duplicate"))},
            root=self.root, split_key=url or None,
        )

    def load(self, record: RawRecord) -> LoadedRecord:
        media, placement, sums = [], [], {}
        trimmed = Counter(record.meta["trimmed"])
        first_error: Rejected | None = None
        for image, sentence in zip(record.images, record.meta["placement"]):
            try:
                read = self.read_image(record, image)
            except Rejected as e:
                trimmed["unreadable_image"] += 1
                first_error = first_error or e
                continue
            media.append(read.media)
            placement.append(sentence)
            sums[record.rel(image)] = read.file_sha256
        if not media:
            assert first_error is not None
            raise Rejected("no_readable_images", first_error.path, f"{first_error.reason}: {first_error.detail}")
        docs_file = record.meta["docs_file"]
        sums[docs_file] = self._docs_sha256(docs_file)
        return LoadedRecord(
            record=record, media=media, file_sha256=sums,
            facts={"document": {"sentences": record.meta["sentences"], "placement": placement, "lang": "en",
                                "url": record.meta["url"], "row": record.meta["row"], "source_file": docs_file,
                                "images": [record.rel(p) for p in record.images],
                                "trimmed": dict(sorted(trimmed.items()))}},
        )

    def _docs_sha256(self, rel: str) -> str:
        """sha256 of a document shard, hashed once per reader (a slice reads few shards)."""
        if rel not in self._sums:
            self._sums[rel] = hashlib.sha256((self.root / rel).read_bytes()).hexdigest()
        return self._sums[rel]
