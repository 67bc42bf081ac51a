"""Fixtures of the dedup tests; the helpers themselves live in ``dedup_images``."""

from __future__ import annotations

import pytest
from PIL import Image

from dedup_images import busi_images, distinct_image


@pytest.fixture(scope="session")
def distinct_set() -> list[Image.Image]:
    """300 procedural images (50 per family) plus the 15 real BUSI ones when bundled."""
    return [distinct_image(s) for s in range(300)] + busi_images()
