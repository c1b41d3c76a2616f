"""Find the broadcast files of an archive and group them into work units (channel x period).

The walk is `os.scandir` (file types from the directory listing, one `lstat` per file for its size,
no file is opened): on a parallel file system the cost is metadata calls, so planning 158,000
broadcast hours stays well under a minute."""

from __future__ import annotations

import os
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
    size: int = 0  # bytes of its files (lstat): the largest units are built first

    @property
    def key(self) -> str:
        return f"{self.channel}/{self.name}"


def _is_media(name: str, all_extensions: bool) -> bool:
    if name.startswith(".") or name.endswith((GROUND_TRUTH_SUFFIX, INDEX_SUFFIX)):
        return False
    suffix = os.path.splitext(name)[1].lower()
    return suffix in ARCHIVE_SUFFIXES or (all_extensions and suffix not in NOT_MEDIA)


def walk_media(root: Path, all_extensions: bool = True) -> list[tuple[str, int]]:
    """(path relative to `root`, bytes) of every broadcast file, unsorted. Directories are entered
    (links to directories are not); a dangling link is listed (ffmpeg's error names it later)."""
    found: list[tuple[str, int]] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as entries:
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append(rel)
                elif not entry.is_dir() and _is_media(entry.name, all_extensions):
                    found.append((rel, entry.stat(follow_symlinks=False).st_size))
    return found


def find_media(root: Path, all_extensions: bool = True) -> list[Path]:
    """Every broadcast file under `root`: `.ts` and, unless disabled, any other non-sidecar file."""
    return sorted(root / rel for rel, _ in walk_media(root, all_extensions))


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
    groups: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for rel, size in walk_media(root, all_extensions):
        groups.setdefault(unit_of(Path(rel), unit), []).append((rel, size))
    return [Unit(ch, name, tuple(sorted(rel for rel, _ in files)), sum(s for _, s in files))
            for (ch, name), files in sorted(groups.items())]
