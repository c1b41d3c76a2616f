"""Find the broadcast files of an archive and group them into work units (channel x period)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from speechfm.core.constants import ARCHIVE_SUFFIXES, GROUND_TRUTH_SUFFIX, INDEX_SUFFIX

# Extensions that are never audio (sidecars written by this project or by archivers).
NOT_MEDIA = {".json", ".jsonl", ".txt", ".tsv", ".csv", ".md", ".part", ".done", ".log", ".xml"}
DATE_PARTS = re.compile(r"^\d{4}$|^\d{2}$")


@dataclass(frozen=True)
class Unit:
    """One unit of work: all files of a channel in one day, month or year; one shard group."""

    channel: str
    name: str  # "2021-01" (month), "2021-01-31" (day), "2021" (year) or "undated"
    files: tuple[str, ...]  # paths relative to the archive root, sorted

    @property
    def key(self) -> str:
        return f"{self.channel}/{self.name}"


def find_media(root: Path, all_extensions: bool = True) -> list[Path]:
    """Every broadcast file under `root`: `.ts` and, unless disabled, any other non-sidecar file."""
    out = []
    for path in root.rglob("*"):
        # a dangling link is listed (ffmpeg's error names it), never skipped silently
        if path.is_dir() or path.name.startswith("."):
            continue
        if path.name.endswith(GROUND_TRUTH_SUFFIX) or path.name.endswith(INDEX_SUFFIX):
            continue
        suffix = path.suffix.lower()
        if suffix in ARCHIVE_SUFFIXES or (all_extensions and suffix not in NOT_MEDIA):
            out.append(path)
    return sorted(out)


def unit_of(rel: Path, unit: str) -> tuple[str, str]:
    """(channel, unit name) of a file at `channel/YYYY/MM/DD/...`; undated files group apart."""
    parts = rel.parts
    channel = parts[0] if len(parts) > 1 else "_root"
    dated = [p for p in parts[1:4] if DATE_PARTS.match(p)]
    depth = {"year": 1, "month": 2, "day": 3}[unit]
    if len(dated) < depth or len(dated[0]) != 4:
        return channel, "undated"
    return channel, "-".join(dated[:depth])


def plan_units(root: Path, unit: str, all_extensions: bool = True) -> list[Unit]:
    """Group the archive's files into units, sorted by channel and name (a stable order)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for path in find_media(root, all_extensions):
        rel = path.relative_to(root)
        groups.setdefault(unit_of(rel, unit), []).append(rel.as_posix())
    return [Unit(ch, name, tuple(sorted(files))) for (ch, name), files in sorted(groups.items())]
