"""Named model presets: YAML files in `megatron_fleming/presets/`, data kept apart from code.

Each file has a `description` and a `model` block in `VLMConfig.from_dict` form; the public
configs each shape comes from are cited at the top of the file.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from megatron_fleming.model.config import VLMConfig

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"no model preset {name!r}; available: {', '.join(preset_names())}")
    return path


def load_preset(name: str, **overrides) -> VLMConfig:
    """The preset's VLMConfig; top-level overrides (e.g. v2pe_delta=0.25) replace fields."""
    data = yaml.safe_load(preset_path(name).read_text())
    if "model" not in data:
        raise ValueError(f"{preset_path(name)} has no 'model' block")
    return VLMConfig.from_dict({**data["model"], **overrides})
