"""Test helpers: `speechfm prepare` run as a user runs it, and the entries of its manifests."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_speechfm


def prepare_cli(archive: Path, out: Path, *extra: str) -> dict:
    proc = run_speechfm("prepare", archive, "--out", out, *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def manifest_bodies(out: Path) -> dict[str, list[str]]:
    """Every manifest's entries (root line left out, since it names the folder)."""
    return {p.name: p.read_text().splitlines()[1:] for p in sorted((out / "manifests").glob("*.tsv"))}
