"""``datakit build grpo``: the stage-4 GRPO set, drawn from another recipe's build.

A recipe with ``grpo_prep: {from: stage3, target_size: ..., yes_no_share: ...}`` builds the recipe
it names (with that recipe's own seed, so the base is byte for byte the release ``datakit build
stage3`` makes) into the work folder, then draws the GRPO set from its *train* shards with
``datakit.llm.grpo_prep`` (multiple choice rewritten as open questions, yes/no capped; its own
seed). The release is that draw: ``grpo-NNNNNN.tar`` + ``.nv-meta`` (one ``train`` split) +
``grpo_report.json``, checksummed and locked like any build. Validation samples of the base
never enter the draw.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from datakit.recipe import Recipe, load_recipe
from datakit.release import release_checksums
from datakit.sample import canonical_json
from datakit.shard_writer import iter_samples


def build_grpo(recipe: Recipe, sources_dir: Path | None, out: Path, *, seed: int | None = None,
               work_dirname: str = ".work", **base_kwargs: Any):
    """Build ``recipe.grpo_prep['from']`` under ``out/<work>/``, draw the GRPO set into ``out``."""
    from datakit.build import build
    from datakit.llm.grpo_prep import GRPOConfig, prepare_grpo
    from datakit.merge import BuildResult

    spec = dict(recipe.grpo_prep or {})
    base = load_recipe(spec.pop("from"))
    work = out / work_dirname
    base_out = work / f"base-{base.name}"
    base_result = build(base, sources_dir, base_out, **base_kwargs)
    cfg = GRPOConfig(seed=recipe.seed if seed is None else seed, **spec)
    for stale in out.glob("*/*.tar*"):  # what a normal build left in this folder
        stale.unlink()
    shutil.rmtree(out / ".nv-meta", ignore_errors=True)
    report = prepare_grpo(sorted((base_out / "train").glob("*.tar")), out, cfg)
    shutil.rmtree(work, ignore_errors=True)
    checksums, release = release_checksums(out)
    summary = _summary(recipe, base, out, report.to_dict(), base_result.summary)
    build_doc = {"recipe": recipe.to_dict(), "seed": cfg.seed, "summary": summary, "checksums": checksums,
                 "release_sha256": release}
    (out / "build.json").write_bytes(canonical_json(build_doc))
    return BuildResult(out=out, summary=summary, checksums=checksums, release_sha256=release)


def _summary(recipe: Recipe, base: Recipe, out: Path, report: dict[str, Any], base_summary: dict[str, Any]) -> dict[str, Any]:
    """The summary ``datakit build`` prints, counted from the written draw."""
    per_source: dict[str, Counter] = defaultdict(Counter)
    tasks: Counter = Counter()
    langs: Counter = Counter()
    for tar in sorted(out.glob("grpo-*.tar")):
        for _, parts in iter_samples(tar):
            doc = json.loads(parts["json"])
            per_source[doc["source"]]["samples"] += 1
            tasks[doc["turns"][0]["task"]] += 1  # a single-turn fleming-vqa/2 sample
            langs[doc["lang"]] += 1
    eligible = sum(report["candidates"].values())
    line = (f"grpo: {report['selected_total']} drawn of {eligible} eligible {base.name} train samples "
            f"(selected {report['selected']}, yes/no share {report['yes_no_share']}); "
            f"not eligible {report['dropped']}")
    return {
        "recipe": recipe.name,
        "derived_from": base.name,
        "sources": {k: dict(v) for k, v in sorted(per_source.items())},
        "missing_sources": base_summary.get("missing_sources", []),
        "tasks": dict(sorted(tasks.items())),
        "langs": dict(sorted(langs.items())),
        "splits": {"train": sum(tasks.values())},
        "rejects": {},
        "grpo": report,
        "base": {"recipe": base.name, "accounting_line": base_summary.get("accounting_line", "")},
        "accounting_line": line,
    }

