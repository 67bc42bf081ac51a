"""`make mutation`: mutation testing of the modules where a silent error corrupts data or training.

Each target of ``scripts/mutation_targets.toml`` (a module and the pytest arguments of its related
tests) is run by mutmut, one module at a time, in its own scratch copy of the tree under
``build/mutation/<target>/`` (the working tree is never edited). mutmut forks each mutant from a
warm process and runs only the tests that execute the mutated function, so a module takes
minutes on two shared cores (cosmic-ray, which starts a fresh interpreter per mutant, took ~10 s
a mutant here: hours per pass).

A mutant the tests do not notice survives; one that no selected test executes ("no tests") is
not caught either. The score is caught / (caught + survived + no tests), where caught includes
timeouts (an endless loop is noticed). Survivors with their diffs go to
``build/mutation/<target>.json``; ``docs/mutation.md`` records the scores and explains each
survivor (killed by a new test, or equivalent).

    python scripts/mutation.py                   # every target, at the working tree
    python scripts/mutation.py --only geometry   # one target (repeatable)
    python scripts/mutation.py --ref 7b3e54c     # the tree of a commit (the "before" scores)
    python scripts/mutation.py --keep ...        # reuse earlier verdicts (after a timeout change)
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = REPO / "scripts" / "mutation_targets.toml"
WORK = REPO / "build" / "mutation"
MUTMUT = Path(sys.executable).parent / "mutmut"
PACKAGES = ("datakit", "megatron_fleming")
CAUGHT = {"killed", "timeout", "segfault", "caught by type check"}
NOT_CAUGHT = {"survived", "no tests"}


@dataclass(frozen=True)
class Target:
    name: str
    module: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()
    isolation: str = "fork"

    @property
    def dotted(self) -> str:
        return self.module.removesuffix(".py").replace("/", ".")

    def patterns(self) -> list[str]:
        """mutmut mutant-name globs: ``pkg.mod.x_fn__mutmut_N`` / ``pkg.mod.xǁClassǁmethod__mutmut_N``."""
        if not self.functions:
            return [f"{self.dotted}.*"]
        return [p for f in self.functions for p in (f"{self.dotted}.x_{f}__mutmut_*", f"{self.dotted}.xǁ{f}ǁ*")]


def load_targets(path: Path = TARGETS) -> list[Target]:
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    targets = []
    for raw in doc.get("target", []):
        unknown = set(raw) - {"name", "module", "tests", "functions", "isolation"}
        if unknown:
            raise SystemExit(f"{path}: target {raw.get('name')!r} has unknown key(s) {sorted(unknown)}")
        if raw["module"].split("/", 1)[0] not in PACKAGES:
            raise SystemExit(f"{path}: target {raw['name']!r}: module must be under {PACKAGES}")
        targets.append(Target(name=raw["name"], module=raw["module"], tests=tuple(raw["tests"]),
                              functions=tuple(raw.get("functions", ())), isolation=raw.get("isolation", "fork")))
    names = [t.name for t in targets]
    if len(names) != len(set(names)):
        raise SystemExit(f"{path}: target names repeat: {names}")
    return targets


def copy_tree(ref: str | None, dest: Path) -> None:
    """The files of the working tree (tracked and untracked, not ignored) or of commit ``ref``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if ref:
        archive = subprocess.run(["git", "archive", ref], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def present_tests(target: Target, tree: Path) -> tuple[list[str], list[str]]:
    """The target's pytest arguments without test files the tree lacks (they land later)."""
    kept, missing = [], []
    for arg in target.tests:
        path = arg.split("::", 1)[0]
        if path.startswith("tests/") and not (tree / path).exists():
            missing.append(arg)
        else:
            kept.append(arg)
    return kept, missing


def configure(work: Path, target: Target, tests: list[str]) -> None:
    """The [tool.mutmut] section of this target, appended to the scratch copy's pyproject."""
    package = target.module.split("/", 1)[0]
    section = {
        "source_paths": [package],
        "only_mutate": [target.module],
        "also_copy": [p for p in (*PACKAGES, "shards", "scripts") if p != package],
        "pytest_add_cli_args": ["-p", "no:cacheprovider"],
        # mutmut limits a mutant's CPU seconds to (tests' measured time + constant) * multiplier * 2.
        # The measured time leaves out session fixtures (a whole build) that each forked mutant
        # redoes, and CPU seconds add up over threads: with the defaults (1, 15) builds "time out"
        # without any fault, which would count as kills; mutmut also stops a mutant at half the limit
        # in wall time, which a loaded machine reaches too. 60 s covers both; an endless loop is
        # still stopped within three minutes.
        "timeout_constant": 60.0,
        "timeout_multiplier": 3.0,
        # "forkserver" for modules whose tests use polars: forked straight from mutmut's main
        # process (which ran the tests), polars' thread pool is dead in the child and the first
        # query blocks forever (false timeouts). Slower, so only where needed.
        "process_isolation": target.isolation,
        "pytest_add_cli_args_test_selection": tests,
    }
    lines = ["", "[tool.mutmut]", *(f"{k} = {json.dumps(v)}" for k, v in section.items())]
    with open(work / "pyproject.toml", "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def run_target(target: Target, tree: Path, out: Path, jobs: int = 2, keep: bool = False) -> dict:
    base = {"name": target.name, "module": target.module}
    tests, missing = present_tests(target, tree)
    if missing:
        print(f"  {target.name}: not in this tree (yet): {' '.join(missing)}")
    if not any(a.startswith("tests/") for a in tests):
        return {**base, "error": "no test files in this tree"}
    work = out / target.name
    if keep and (work / "mutants").exists():
        # mutmut keeps its verdicts and re-runs those a config change invalidates (timeouts)
        text = (work / "pyproject.toml").read_text(encoding="utf-8")
        (work / "pyproject.toml").write_text(text.split("\n[tool.mutmut]\n", 1)[0], encoding="utf-8")
    else:
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(tree, work)
    configure(work, target, tests)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mutmut puts mutants/ first
    env.setdefault("TQDM_DISABLE", "1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "POLARS_MAX_THREADS"):
        env.setdefault(var, "1")  # two shared cores: one thread per mutant process
    start = time.monotonic()
    ran = subprocess.run([str(MUTMUT), "run", "--max-children", str(jobs), *target.patterns()], cwd=work, env=env,
                         capture_output=True, text=True)
    seconds = time.monotonic() - start
    (out / f"{target.name}.log").write_text(ran.stdout + ran.stderr, encoding="utf-8")
    meta = work / "mutants" / (target.module + ".meta")
    if ran.returncode != 0 or not meta.exists():
        return {**base, "error": f"mutmut run failed ({ran.returncode}): {(ran.stdout + ran.stderr)[-3000:]}"}
    return summarise(target, work, meta, seconds, missing, env)


def summarise(target: Target, work: Path, meta: Path, seconds: float, missing: list[str], env: dict) -> dict:
    from mutmut.stats import status_by_exit_code

    codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    patterns = target.patterns()
    statuses = {k: status_by_exit_code[c] for k, c in codes.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    counts: dict[str, int] = {}
    for s in statuses.values():
        counts[s] = counts.get(s, 0) + 1
    caught = sum(n for s, n in counts.items() if s in CAUGHT)
    judged = caught + sum(n for s, n in counts.items() if s in NOT_CAUGHT)
    survivors = []
    for key in sorted(k for k, s in statuses.items() if s in NOT_CAUGHT):
        shown = subprocess.run([str(MUTMUT), "show", key], cwd=work, env=env, capture_output=True, text=True)
        survivors.append({"mutant": key, "status": statuses[key], "diff": shown.stdout.split("\n", 1)[-1]})
    return {"name": target.name, "module": target.module, "tests": list(target.tests), "tests_missing": missing,
            "mutants": len(statuses), "counts": counts, "caught": caught,
            "score": round(caught / judged, 4) if judged else None, "seconds": round(seconds, 1),
            "survivors": survivors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="target name (repeatable); default all")
    parser.add_argument("--ref", help="run on the tree of this commit instead of the working tree")
    parser.add_argument("--keep", action="store_true",
                        help="reuse a target's earlier scratch copy and verdicts (re-runs only what changed, e.g. timeouts)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--out", type=Path, default=WORK, help="results folder (default build/mutation)")
    args = parser.parse_args(argv)
    if not MUTMUT.exists():
        raise SystemExit(f"mutmut is not installed next to {sys.executable}: pip install -e '.[mutation]'")
    targets = load_targets()
    if args.only:
        unknown = set(args.only) - {t.name for t in targets}
        if unknown:
            raise SystemExit(f"unknown target(s) {sorted(unknown)}; known: {[t.name for t in targets]}")
        targets = [t for t in targets if t.name in args.only]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tree = out / "tree"
    copy_tree(args.ref, tree)
    failed = False
    for target in targets:
        if not (tree / target.module).exists():
            print(f"{target.name}: {target.module} is not in this tree, skipped")
            continue
        print(f"{target.name}: mutating {target.module} ...", flush=True)
        result = run_target(target, tree, out, jobs=args.jobs, keep=args.keep)
        result["ref"] = args.ref or "working tree"
        (out / f"{target.name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
        if "error" in result:
            failed = True
            print(f"  {target.name}: ERROR {result['error'][-1500:]}")
            continue
        print(f"  {target.name}: score {result['score']:.1%} of {result['mutants']} mutants {result['counts']} "
              f"in {result['seconds']:.0f} s", flush=True)
        for s in result["survivors"]:
            print(f"    {s['status']}: {s['mutant']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
