"""Site profiles (`pipelines/sites/<name>.yaml`): where stages run, as data.

Each stage reads its own section (`prepare:`, `train:`); this module only finds the file.
"""

from __future__ import annotations

from pathlib import Path

from speechfm.errors import SpeechfmError

SITES_DIR = Path("pipelines") / "sites"
CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


def site_dirs() -> list[Path]:
    """Where site files are looked up: the current project, then this checkout."""
    return [Path.cwd() / SITES_DIR, CHECKOUT_ROOT / SITES_DIR]


def site_file(name: str | Path) -> Path:
    """The site file for a name (`lumi`) or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    found = [p for p in (d / f"{name}.yaml" for d in site_dirs()) if p.is_file()]
    if not found:
        known = sorted({p.stem for d in site_dirs() if d.is_dir() for p in d.glob("*.yaml")})
        raise SpeechfmError(f"unknown site '{name}'", hint=f"known sites: {', '.join(known)}")
    return found[0]
