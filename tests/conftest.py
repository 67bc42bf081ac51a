"""Shared fixtures: the bundled sample sources and a session-wide demo build."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SOURCES = REPO / "datakit" / "sample_sources"
BIN = Path(sys.executable).parent

os.environ.setdefault("TQDM_DISABLE", "1")

# Property tests draw the same examples on every run and machine (derandomize), keep no example
# database, and have no per-example deadline (two shared cores make timings noisy): CI cannot
# flake on them, and each test bounds its own max_examples.
settings.register_profile("fleming", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fleming")


@pytest.fixture(scope="session")
def sample_sources() -> Path:
    return SAMPLE_SOURCES


@pytest.fixture()
def sources_copy(tmp_path: Path) -> Path:
    """A writable copy of the bundled sources, for planting bad input."""
    dst = tmp_path / "sources"
    shutil.copytree(SAMPLE_SOURCES, dst, ignore=shutil.ignore_patterns("README.md"))
    return dst


@pytest.fixture(scope="session")
def ultrasound_build(tmp_path_factory):
    """One build of the ultrasound recipe from the bundled samples, shared by read-only tests."""
    from datakit.build import build
    from datakit.recipe import load_recipe

    out = tmp_path_factory.mktemp("ultrasound") / "ultrasound"
    result = build(load_recipe("ultrasound"), SAMPLE_SOURCES, out)
    return result


@pytest.fixture(scope="session")
def stage_builds(tmp_path_factory):
    """The stage recipes built once from the bundled samples into ``<tmp>/shards/<recipe>``, where
    the trainer's stage metadatasets (``../../../shards/<recipe>``) find them: name -> BuildResult."""
    from datakit.build import build
    from datakit.recipe import load_recipe

    shards = tmp_path_factory.mktemp("stages") / "shards"
    return {name: build(load_recipe(name), SAMPLE_SOURCES, shards / name)
            for name in ("stage1", "stage2", "stage3", "grpo")}


@pytest.fixture(scope="session")
def all_build(tmp_path_factory):
    """One offline build of the `all` recipe from the bundled samples, shared by read-only tests."""
    from datakit.build import build
    from datakit.recipe import load_recipe

    out = tmp_path_factory.mktemp("all") / "all"
    return build(load_recipe("all"), SAMPLE_SOURCES, out)


@pytest.fixture(autouse=True, scope="session")
def _empty_decontam_registry(tmp_path_factory):
    """Builds in tests check against an empty benchmark registry unless a test registers one,
    so a developer's own registrations never change what the tests see."""
    os.environ["DATAKIT_DECONTAM_DIR"] = str(tmp_path_factory.mktemp("decontam"))
