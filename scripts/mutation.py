"""`make mutation`: mutation testing of the modules where a silent error corrupts data or training.

Each target of ``scripts/mutation_targets.toml`` (a module and the pytest arguments of its related
tests) is run by cosmic-ray, one module at a time, in a scratch copy of the tree under
``build/mutation/`` so the working tree is never edited. Every mutant reruns the module's tests in
a fresh process; a mutant the tests do not notice "survives". The score is killed / (killed +
survived); timeouts count as killed (an infinite loop is noticed), mutants that do not import are
reported apart. Survivors, with their diffs, go to ``build/mutation/<target>.json``; the scores
and survivors are summarised in ``docs/mutation.md`` by hand (each survivor killed by a new test or
explained as equivalent).

Only a curated operator set runs: the mistakes people make (``<`` for ``<=``, ``+`` for ``-``, an
off-by-one constant, a dropped ``not``, ``and``/``or``, a loop that never runs, a swallowed
exception) rather than every one of cosmic-ray's 200 operator pairs, so a module finishes in
minutes on two shared cores.

    python scripts/mutation.py                   # every target, at the working tree
    python scripts/mutation.py --only geometry   # one target
    python scripts/mutation.py --ref HEAD~3      # the tree of a commit (the "before" scores)
    python scripts/mutation.py --recheck DIR     # rerun only DIR's survivors (the module unchanged)

``--recheck`` is how new tests are scored against an earlier run: mutants of an unchanged module
are numbered alike, the earlier run's killed mutants stay killed (tests were added, not removed),
and only its survivors are run again.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shlex
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
BIN = Path(sys.executable).parent

_BINARY = ("Add_Sub", "Sub_Add", "Mul_Div", "Div_Mul", "Div_FloorDiv", "FloorDiv_Div", "Mod_FloorDiv",
           "Pow_Mul", "BitAnd_BitOr", "BitOr_BitAnd", "BitXor_BitOr", "LShift_RShift", "RShift_LShift")
_COMPARE = ("Eq_NotEq", "NotEq_Eq", "Lt_LtE", "LtE_Lt", "Gt_GtE", "GtE_Gt", "Lt_Gt", "Gt_Lt",
            "LtE_GtE", "GtE_LtE", "Is_IsNot", "IsNot_Is")
KEPT_OPERATORS = (
    *(f"core/ReplaceBinaryOperator_{p}" for p in _BINARY),
    *(f"core/ReplaceComparisonOperator_{p}" for p in _COMPARE),
    "core/ReplaceUnaryOperator_USub_UAdd", "core/ReplaceUnaryOperator_Delete_Not",
    "core/AddNot", "core/ReplaceTrueWithFalse", "core/ReplaceFalseWithTrue",
    "core/ReplaceAndWithOr", "core/ReplaceOrWithAnd",
    "core/ReplaceBreakWithContinue", "core/ReplaceContinueWithBreak",
    "core/NumberReplacer", "core/ZeroIterationForLoop", "core/ExceptionReplacer",
)


@dataclass(frozen=True)
class Target:
    name: str
    module: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ()


def load_targets(path: Path = TARGETS) -> list[Target]:
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    targets = []
    for raw in doc.get("target", []):
        unknown = set(raw) - {"name", "module", "tests", "functions"}
        if unknown:
            raise SystemExit(f"{path}: target {raw.get('name')!r} has unknown key(s) {sorted(unknown)}")
        targets.append(Target(name=raw["name"], module=raw["module"], tests=tuple(raw["tests"]),
                              functions=tuple(raw.get("functions", ()))))
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


def function_lines(module: Path, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Line spans of the named top-level functions/classes (decorators included)."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    spans = {n.name: (min([n.lineno, *(d.lineno for d in n.decorator_list)]), n.end_lineno)
             for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    unknown = [n for n in names if n not in spans]
    if unknown:
        raise SystemExit(f"{module}: no top-level function or class {unknown}")
    return [spans[n] for n in names]


def skip_filtered(session: Path, spans: list[tuple[int, int]], only: set[tuple[str, int]] | None = None) -> None:
    """Mark as skipped the mutants of operators outside KEPT_OPERATORS or outside ``spans`` (and,
    with ``only``, every mutant but those (operator, occurrence))."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    kept = set(KEPT_OPERATORS)
    with use_db(str(session), WorkDB.Mode.open) as db:
        skipped = []
        for item in db.pending_work_items:
            for m in item.mutations:
                line = m.start_pos[0]
                outside = spans and not any(a <= line <= b for a, b in spans)
                if m.operator_name not in kept or outside or (only is not None and (m.operator_name, m.occurrence) not in only):
                    skipped.append(item.job_id)
                    break
        if skipped:
            db.set_multiple_results(skipped, WorkResult(output="filtered", worker_outcome=WorkerOutcome.SKIPPED))


def _cosmic_ray(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "cosmic-ray"), *args], cwd=cwd, capture_output=True, text=True)


def run_target(target: Target, tree: Path, out: Path, earlier: dict | None = None, resume: bool = False) -> dict:
    tests, missing = present_tests(target, tree)
    if missing:
        print(f"  {target.name}: not in this tree (yet): {' '.join(missing)}")
    if not any(a.startswith("tests/") for a in tests):
        return {"name": target.name, "module": target.module, "error": "no test files in this tree"}
    command = shlex.join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests])
    # Time the unmutated tests once to set the per-mutant timeout.
    start = time.monotonic()
    base = subprocess.run(shlex.split(command), cwd=tree, capture_output=True, text=True)
    baseline_s = time.monotonic() - start
    if base.returncode != 0:
        tail = (base.stdout + base.stderr)[-2000:]
        return {"name": target.name, "module": target.module, "error": f"tests fail unmutated:\n{tail}"}
    config = out / f"{target.name}.toml"
    config.write_text(
        f'[cosmic-ray]\nmodule-path = "{target.module}"\ntimeout = {max(30.0, 4 * baseline_s):.0f}\n'
        f"excluded-modules = []\ntest-command = {json.dumps(command)}\n\n"
        '[cosmic-ray.distributor]\nname = "local"\n', encoding="utf-8")
    session = out / f"{target.name}.sqlite"
    if not (resume and session.exists()):  # else cosmic-ray goes on with the pending mutants
        session.unlink(missing_ok=True)
        init = _cosmic_ray("init", str(config), str(session), cwd=tree)
        if init.returncode != 0:
            return {"name": target.name, "module": target.module, "error": f"cosmic-ray init: {init.stderr[-2000:]}"}
        spans = function_lines(tree / target.module, target.functions) if target.functions else []
        only = None if earlier is None else {(s["operator"], s["occurrence"]) for s in earlier["survivors"]}
        skip_filtered(session, spans, only)
    start = time.monotonic()
    ran = _cosmic_ray("exec", str(config), str(session), cwd=tree)
    if ran.returncode != 0:
        return {"name": target.name, "module": target.module, "error": f"cosmic-ray exec: {ran.stderr[-2000:]}"}
    result = summarise(target, session, baseline_s, time.monotonic() - start, missing)
    return result if earlier is None else merge_recheck(earlier, result)


def merge_recheck(earlier: dict, rerun: dict) -> dict:
    """Counts of the earlier run with its survivors replaced by their outcome now."""
    merged = dict(rerun)
    for key in ("killed", "timeout", "incompetent", "no_test"):
        merged[key] = earlier[key] + rerun[key]
    caught = merged["killed"] + merged["timeout"]
    judged = caught + merged["survived"]
    merged["score"] = round(caught / judged, 4) if judged else None
    merged["rechecked"] = len(earlier["survivors"])
    return merged


def summarise(target: Target, session: Path, baseline_s: float, exec_s: float, missing: list[str]) -> dict:
    dump = _cosmic_ray("dump", str(session), cwd=session.parent)
    counts = {"killed": 0, "timeout": 0, "survived": 0, "incompetent": 0, "no_test": 0, "pending": 0}
    survivors = []
    for line in dump.stdout.splitlines():
        item, result = json.loads(line)
        if result is None:
            counts["pending"] += 1
            continue
        if result["worker_outcome"] == "skipped":
            continue
        if result["worker_outcome"] == "no-test":
            counts["no_test"] += 1
            continue
        outcome = result["test_outcome"]
        if outcome == "survived":
            counts["survived"] += 1
            m = item["mutations"][0]
            survivors.append({"line": m["start_pos"][0], "operator": m["operator_name"],
                              "occurrence": m["occurrence"], "function": m.get("definition_name"),
                              "diff": result["diff"]})
        elif outcome == "incompetent":
            counts["incompetent"] += 1
        elif result.get("output") == "timeout":
            counts["timeout"] += 1
        else:
            counts["killed"] += 1
    caught = counts["killed"] + counts["timeout"]
    judged = caught + counts["survived"]
    survivors.sort(key=lambda s: (s["line"], s["operator"], s["occurrence"]))
    return {"name": target.name, "module": target.module, "tests": list(target.tests),
            "tests_missing": missing, **counts, "score": round(caught / judged, 4) if judged else None,
            "baseline_s": round(baseline_s, 1), "exec_s": round(exec_s, 1), "survivors": survivors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="target name (repeatable); default all")
    parser.add_argument("--ref", help="run on the tree of this commit instead of the working tree")
    parser.add_argument("--recheck", type=Path, help="rerun only the survivors recorded in this results folder")
    parser.add_argument("--resume", action="store_true", help="go on with an interrupted run's sessions")
    parser.add_argument("--out", type=Path, default=WORK, help="results folder (default build/mutation)")
    args = parser.parse_args(argv)
    targets = load_targets()
    if args.only:
        unknown = set(args.only) - {t.name for t in targets}
        if unknown:
            raise SystemExit(f"unknown target(s) {sorted(unknown)}; known: {[t.name for t in targets]}")
        targets = [t for t in targets if t.name in args.only]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tree = out / "tree"
    copy_tree(args.ref, tree)  # fresh, also after a killed run left a mutant on disk
    os.environ["PYTHONPATH"] = str(tree)
    os.environ.setdefault("TQDM_DISABLE", "1")
    failed = False
    for target in targets:
        if not (tree / target.module).exists():
            print(f"{target.name}: {target.module} is not in this tree, skipped")
            continue
        print(f"{target.name}: mutating {target.module} ...", flush=True)
        earlier = None
        if args.recheck:
            earlier = json.loads((args.recheck / f"{target.name}.json").read_text(encoding="utf-8"))
            if "error" in earlier:  # no scores to build on (e.g. no related tests then): run all
                print(f"  {target.name}: the earlier run has no scores, running every mutant")
                earlier = None
        result = run_target(target, tree, out, earlier, resume=args.resume)
        result["ref"] = args.ref or "working tree"
        (out / f"{target.name}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        if "error" in result:
            failed = True
            print(f"  {target.name}: ERROR {result['error']}")
            continue
        print(f"  {target.name}: score {result['score']:.1%} ({result['killed']} killed, "
              f"{result['timeout']} timeout, {result['survived']} survived, {result['incompetent']} "
              f"incompetent) in {result['exec_s']:.0f} s", flush=True)
        for s in result["survivors"]:
            print(f"    survivor line {s['line']} {s['operator']} in {s['function']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
