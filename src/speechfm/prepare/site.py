"""Site files (`pipelines/sites/<name>.yaml`): this stage reads only their `prepare:` section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechfm.errors import SpeechfmError


def load_site(path: Path | None) -> dict[str, Any]:
    """The `prepare:` section of a site file ({} without a file): keys `workers`, `config`
    (PrepareConfig fields) and `slurm` (submitit executor parameters)."""
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpeechfmError(f"cannot read site file: {exc}", path=path) from None
    section = data.get("prepare", {}) or {}
    unknown = sorted(set(section) - {"workers", "config", "slurm"})
    if unknown:
        raise SpeechfmError(f"unknown keys {unknown} in the 'prepare:' section", path=path)
    return section
