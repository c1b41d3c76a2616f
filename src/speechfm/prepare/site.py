"""Site files (`pipelines/sites/<name>.yaml`): this stage reads only their `prepare:` section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechfm.errors import SpeechfmError


def load_site(name: str | Path | None) -> dict[str, Any]:
    """The `prepare:` section of a site file ({} without a file): keys `executor` (`local` or
    `slurm`), `workers`, `config` (PrepareConfig fields) and `slurm` (submitit parameters)."""
    if name is None:
        return {}
    import yaml

    from speechfm.sites import site_file

    path = site_file(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpeechfmError(f"cannot read site file: {exc}", path=path) from None
    section = data.get("prepare", {}) or {}
    unknown = sorted(set(section) - {"executor", "workers", "config", "slurm"})
    if unknown:
        raise SpeechfmError(f"unknown keys {unknown} in the 'prepare:' section", path=path)
    if section.get("executor", "local") not in ("local", "slurm"):
        raise SpeechfmError(f"prepare.executor must be local or slurm, not {section['executor']!r}",
                            path=path)
    return section
