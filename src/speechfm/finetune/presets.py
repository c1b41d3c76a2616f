"""Fine-tuning presets: data files `presets/finetune_<name>.yaml`, one per model size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from speechfm.errors import SpeechfmError

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"
PREFIX = "finetune_"


def available() -> list[str]:
    """Names of the shipped fine-tuning presets."""
    return sorted(p.stem[len(PREFIX):] for p in PRESET_DIR.glob(f"{PREFIX}*.yaml"))


def load(name_or_path: str) -> dict[str, Any]:
    """A preset by name (`tiny`, `base`, ...) or from a YAML file the user wrote."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{PREFIX}{name_or_path}.yaml"
    if not path.exists():
        raise SpeechfmError("no such fine-tuning preset", path=path,
                            hint=f"shipped presets: {', '.join(available())}")
    with path.open(encoding="utf-8") as f:
        preset = yaml.safe_load(f)
    for section in ("model", "ctc", "transformers", "fairseq"):
        if section not in preset:
            raise SpeechfmError(f"preset has no '{section}' section", path=path)
    preset.setdefault("name", path.stem.removeprefix(PREFIX))
    return preset
