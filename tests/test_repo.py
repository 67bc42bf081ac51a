"""What a user of the repository meets: no path of a development machine in any tracked file,
docs of our own (not a workspace's), and a `fleming` run free of third-party noise."""

from __future__ import annotations

import re
import subprocess
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.])/(work|home|Users|root)/[\w.-]+")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    out = []
    for name in names.splitlines():
        path = REPO / name
        if path.is_file() and path.stat().st_size < 2_000_000 and b"\0" not in path.read_bytes()[:4096]:
            out.append(path)
    return out


def test_no_machine_paths_in_tracked_files():
    hits = []
    for path in tracked_text_files():
        if path.name == ".gitignore":
            continue  # "/work/" there is a repo-relative ignore pattern
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    assert hits == []


def test_readme_points_to_the_repos_own_docs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "../shared" not in readme and "docs/README.md" in readme
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    linked = re.findall(r"\]\(([\w.-]+\.md)\)", index)
    for page in linked:
        assert (REPO / "docs" / page).is_file(), page
    unlisted = {p.name for p in (REPO / "docs").glob("*.md")} - set(linked) - {"README.md"}
    assert not unlisted, f"docs/README.md does not list {sorted(unlisted)}"


def test_fleming_silences_backend_fallbacks_and_keeps_other_warnings():
    from megatron_fleming.cli import quiet_third_party

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn("Transformer Engine and Apex are not installed. Falling back to Torch optimizers.")
        warnings.warn("Apex is not installed. Falling back to Torch Norm")
        warnings.warn("datakit: 3 samples skipped (image too large)")
    assert [str(w.message) for w in caught] == ["datakit: 3 samples skipped (image too large)"]
