"""The ``datakit`` command: list, build, verify, lock."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from datakit.errors import EmptyBuildError, RecipeError

LOCK_DIR = Path("shards")


def _progress():
    from datakit.progress import Progress

    return Progress.for_stream(sys.stderr)


def cmd_list(args: argparse.Namespace) -> int:
    from datakit import registry
    from datakit.recipe import list_recipes, load_recipe

    print("recipes:")
    for name in list_recipes():
        r = load_recipe(name)
        made_of = f"(drawn from {r.grpo_prep['from']})" if r.grpo_prep else ", ".join(s.source for s in r.sources)
        print(f"  {name:14s} {made_of}  {r.description}")
    print("sources:")
    for name, cls in registry.sources().items():
        print(f"  {name:14s} {cls.modality:12s} expects {cls.top_folder}/")
    return 0


def print_summary(summary: dict, out: Path, release: str) -> None:
    print(f"built recipe {summary['recipe']} -> {out}")
    for src, c in summary["sources"].items():
        print(f"  {src:14s} " + ", ".join(f"{k}={v}" for k, v in c.items()))
    if summary["missing_sources"]:
        print("  missing sources (not built): " + "; ".join(summary["missing_sources"]))
    print("  tasks: " + ", ".join(f"{k}={v}" for k, v in summary["tasks"].items()))
    print("  langs: " + ", ".join(f"{k}={v}" for k, v in summary["langs"].items()))
    print("  splits: " + ", ".join(f"{k}={v}" for k, v in summary["splits"].items()))
    if summary["rejects"]:
        print("  rejected: " + ", ".join(f"{k}={v}" for k, v in summary["rejects"].items()))
    if summary.get("ignored"):
        print("  ignored (not inputs): " + ", ".join(f"{k}={v}" for k, v in summary["ignored"].items()))
    errors = summary.get("internal_errors") or {}
    if errors.get("count"):
        print(f"  INTERNAL ERRORS: {errors['count']} record(s) failed unexpectedly (reason internal_error; "
              f"--strict stops at the first), e.g. {errors['examples'][0]}")
    if "decontam" in summary:
        names = ", ".join(f"{b['name']} ({b['images']} images, {b['sha256'][:12]})" for b in summary["decontam"])
        print(f"  decontaminated against: {names or 'no benchmark registered'}")
    if summary.get("llm"):
        client = summary["llm"]["client"]
        print("  llm: " + ", ".join(f"{k}={v}" for k, v in client.items() if not isinstance(v, dict)))
    for line in summary.get("dedup_lines", []):
        print(f"  dedup: {line}")
    for line in summary.get("balance_lines", []):
        print(f"  {line}")
    print(f"  {summary['accounting_line']}")
    print(f"  release sha256 {release}")


def llm_config_from_args(args: argparse.Namespace):
    """The build's LLM settings; no ``--llm-base-url`` = offline (answers from the cache only)."""
    from datakit.llm.config import LLMConfig

    return LLMConfig(
        cache_dir=Path(args.llm_cache), base_url=args.llm_base_url, model=args.llm_model,
        api_key_env=args.llm_api_key_env, concurrency=args.llm_concurrency,
        max_requests=args.llm_max_requests, max_tokens_total=args.llm_max_tokens,
    )


def add_llm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LLM steps (converters that ask an LLM: enrichment, video MCQ, CoT, translation)")
    g.add_argument("--llm-base-url", help="OpenAI-compatible endpoint; omitted = offline (cache only)")
    g.add_argument("--llm-model", default="gpt-4o")
    g.add_argument("--llm-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    g.add_argument("--llm-cache", default="shards/llm-cache", help="content-addressed response cache folder")
    g.add_argument("--llm-concurrency", type=int, default=8)
    g.add_argument("--llm-max-requests", type=int, help="request budget of the build (retries included)")
    g.add_argument("--llm-max-tokens", type=int, help="token budget of the build (prompt + completion)")


def cmd_build(args: argparse.Namespace) -> int:
    from datakit.build import build, plan_build
    from datakit.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    out = Path(args.out) if args.out else Path("shards") / recipe.name
    if args.slurm:
        from datakit import slurm

        plan, _ = plan_build(recipe, Path(args.sources) if args.sources else None, out, seed=args.seed,
                             slice_size=args.slice_records, allow_empty=args.allow_empty,
                             decontam_dir=args.decontam, progress=_progress())
        scripts = slurm.write_scripts(recipe.path, out, args.array, cpus=args.cpus_per_task,
                                      partition=args.partition)
        print(f"planned {len(plan.records)} records in {plan.n_slices} slices; scripts in {scripts.array.parent}")
        if args.dry_run:
            print(f"dry run: submit with sbatch {scripts.array} then the merge {scripts.merge}")
            return 0
        array_id, merge_id = slurm.submit(scripts, wait=args.wait)
        print(f"submitted array job {array_id} ({args.array} tasks) and merge job {merge_id}")
        if args.wait:
            print((out / "build.json").exists() and f"merge finished: {out}" or "merge did not produce a build")
        return 0
    result = build(recipe, Path(args.sources) if args.sources else None, out, workers=args.workers,
                   seed=args.seed, keep_work=args.keep_work, slice_size=args.slice_records,
                   llm_config=llm_config_from_args(args), progress=_progress(), strict=args.strict,
                   allow_empty=args.allow_empty, decontam_dir=args.decontam)
    print_summary(result.summary, out, result.release_sha256)
    return 0


def cmd_slice(args: argparse.Namespace) -> int:
    from datakit.build import run_array_task
    from datakit.recipe import load_recipe

    done = run_array_task(load_recipe(args.recipe), Path(args.out), args.task, args.tasks,
                          llm_config_from_args(args), strict=args.strict)
    print(f"task {args.task}/{args.tasks}: converted {len(done)} slice(s)")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from datakit.build import merge_build
    from datakit.recipe import load_recipe

    out = Path(args.out)
    from datakit.build import check_not_empty

    result = merge_build(load_recipe(args.recipe), out, keep_work=args.keep_work, progress=_progress())
    print_summary(result.summary, out, result.release_sha256)
    if not args.allow_empty:
        check_not_empty(result)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from datakit.build import plan_build
    from datakit.recipe import load_recipe

    plan, work = plan_build(load_recipe(args.recipe), Path(args.sources) if args.sources else None,
                            Path(args.out), seed=args.seed, slice_size=args.slice_records,
                            allow_empty=args.allow_empty, decontam_dir=args.decontam, progress=_progress())
    print(f"planned {len(plan.records)} records in {plan.n_slices} slices -> {work / 'plan.json'}")
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from datakit.metadataset import recipe_blend, write_metadataset

    weights = {}
    for item in args.weights:
        name, sep, w = item.partition("=")
        if not sep:
            print(f"datakit blend: expected RECIPE=WEIGHT, got {item!r}", file=sys.stderr)
            return 2
        weights[name] = float(w)
    root = Path(args.shards)
    path = write_metadataset(Path(args.out) if args.out else root / "blend.yaml", recipe_blend(root, weights))
    print(f"wrote {path}")
    return 0


def cmd_decontam(args: argparse.Namespace) -> int:
    from datakit.dedup import decontam

    if args.action == "add":
        info = decontam.add_benchmark(args.name, Path(args.dir), registry=args.registry, split=args.split,
                                      workers=args.workers, benchmark=args.benchmark)
        print(f"registered {args.name}: {info}")
    elif args.action == "list":
        for b in decontam.list_benchmarks(args.registry):
            print("  " + ", ".join(f"{k}={v}" for k, v in b.items()))
    else:
        decontam.remove_benchmark(args.name, args.registry)
        print(f"removed {args.name}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from datakit.release import compare_with_lock

    lock = Path(args.lock) if args.lock else LOCK_DIR / f"{args.recipe}.lock"
    out = Path(args.out) if args.out else Path("shards") / args.recipe
    if not lock.exists():
        print(f"no lock file {lock}", file=sys.stderr)
        return 2
    problems = compare_with_lock(out, lock)
    if problems:
        print(f"verify FAILED: {out} differs from {lock}:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"verify OK: {out} matches {lock}")
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    import json

    from datakit.release import make_lock, write_lock

    out = Path(args.out) if args.out else Path("shards") / args.recipe
    build_doc = json.loads((out / "build.json").read_text())
    lock = Path(args.lock) if args.lock else LOCK_DIR / f"{args.recipe}.lock"
    write_lock(lock, make_lock(out, args.recipe, build_doc["seed"]))
    print(f"wrote {lock}")
    return 0


DECONTAM_HELP = ("decontamination registry folder (default: $DATAKIT_DECONTAM_DIR, else "
                 "$XDG_DATA_HOME/datakit/decontam, i.e. ~/.local/share/datakit/decontam)")


def add_build_checks(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-empty", action="store_true",
                   help="exit 0 when --sources holds none of the recipe's sources or no sample is emitted")
    p.add_argument("--decontam", metavar="DIR", help=DECONTAM_HELP)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="datakit", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list recipes and sources").set_defaults(fn=cmd_list)

    b = sub.add_parser("build", help="build a recipe into Energon shards")
    b.add_argument("recipe", help="packaged recipe name (datakit list), or a recipe file given as a path (./x.yaml)")
    b.add_argument("--sources", help="folder holding each dataset's released top folder (default: bundled samples)")
    b.add_argument("--out", help="output folder (default: shards/RECIPE)")
    b.add_argument("--workers", type=int, default=1, help="processes converting slices in parallel")
    b.add_argument("--seed", type=int, help="override the recipe's seed")
    b.add_argument("--keep-work", action="store_true", help="keep the per-slice work folder")
    b.add_argument("--slice-records", type=int, default=128,
                   help="records per work slice (resume granularity; does not change the output)")
    b.add_argument("--slurm", action="store_true", help="run as a SLURM job array + merge job")
    b.add_argument("--array", type=int, default=4, help="number of SLURM array tasks (with --slurm)")
    b.add_argument("--partition", help="SLURM partition (with --slurm)")
    b.add_argument("--cpus-per-task", type=int, default=1)
    b.add_argument("--wait", action="store_true", help="with --slurm: block until the merge job ends")
    b.add_argument("--dry-run", action="store_true", help="with --slurm: write the scripts, submit nothing")
    add_build_checks(b)
    b.add_argument("--strict", action="store_true",
                   help="(developers) stop at the first unexpected per-record error instead of recording "
                        "it as internal_error")
    add_llm_args(b)
    b.set_defaults(fn=cmd_build)

    pl = sub.add_parser("plan", help="(array step 0) discover sources and write the plan")
    pl.add_argument("recipe")
    pl.add_argument("--sources")
    pl.add_argument("--out", required=True)
    pl.add_argument("--seed", type=int)
    pl.add_argument("--slice-records", type=int, default=128)
    add_build_checks(pl)
    pl.set_defaults(fn=cmd_plan)

    sl = sub.add_parser("slice", help="(array task) convert this task's slices of a planned build")
    sl.add_argument("recipe")
    sl.add_argument("--out", required=True)
    sl.add_argument("--task", type=int, required=True)
    sl.add_argument("--tasks", type=int, required=True)
    sl.add_argument("--strict", action="store_true", help="stop at the first unexpected per-record error")
    add_llm_args(sl)
    sl.set_defaults(fn=cmd_slice)

    mg = sub.add_parser("merge", help="(merge task) merge the finished slices into the release")
    mg.add_argument("recipe")
    mg.add_argument("--out", required=True)
    mg.add_argument("--keep-work", action="store_true")
    mg.add_argument("--allow-empty", action="store_true", help="exit 0 even when no sample was emitted")
    mg.set_defaults(fn=cmd_merge)

    bl = sub.add_parser("blend", help="write an Energon metadataset blending built recipes by weight")
    bl.add_argument("weights", nargs="+", metavar="RECIPE=WEIGHT")
    bl.add_argument("--shards", default="shards", help="folder holding the built recipes")
    bl.add_argument("--out", help="metadataset YAML (default: SHARDS/blend.yaml)")
    bl.set_defaults(fn=cmd_blend)

    dc = sub.add_parser("decontam", help="register evaluation benchmarks every build is checked against")
    dsub = dc.add_subparsers(dest="action", required=True)
    add = dsub.add_parser("add", help="hash a benchmark's images (its released layout, or any image folder)")
    add.add_argument("name")
    add.add_argument("dir")
    add.add_argument("--split", default="test", help="test (where the layout records one) or all")
    add.add_argument("--workers", type=int, default=1)
    add.add_argument("--benchmark", help="read DIR with this evaluation benchmark's reader (datakit.benchmarks: "
                     "vqa_rad, slake, ...) and register the images its items show the model")
    dsub.add_parser("list", help="registered benchmarks")
    rm = dsub.add_parser("rm", help="unregister a benchmark")
    rm.add_argument("name")
    for p_ in (add, dsub.choices["list"], rm):
        p_.add_argument("--registry", "--decontam", dest="registry", help=DECONTAM_HELP)
    dc.set_defaults(fn=cmd_decontam)

    v = sub.add_parser("verify", help="compare a build with its committed lock file")
    v.add_argument("recipe")
    v.add_argument("--out", help="build folder (default: shards/RECIPE)")
    v.add_argument("--lock", help="lock file (default: shards/RECIPE.lock)")
    v.set_defaults(fn=cmd_verify)

    lk = sub.add_parser("lock", help="write the lock file of a build (for a release)")
    lk.add_argument("recipe")
    lk.add_argument("--out")
    lk.add_argument("--lock")
    lk.set_defaults(fn=cmd_lock)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("datakit.progress").setLevel(logging.INFO)
    try:
        return args.fn(args)
    except RecipeError as e:
        print(f"datakit: recipe error: {e}", file=sys.stderr)
        return 2
    except EmptyBuildError as e:
        if e.result is not None:
            print_summary(e.result.summary, e.result.out, e.result.release_sha256)
        print(f"datakit: nothing built: {e} (--allow-empty to accept)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
