"""Every segment of a prepared dataset as numpy columns, numbered in broadcast order, read from the
units' done-markers and shard indexes (one JSON line each, parsed without building objects).

Segment ids are ranks: id 0 is the earliest broadcast (date and hour from the archive layout
`channel/YYYY/MM/DD/channel_HHMM-HHMM.ts`, then start in the file); `dedup` keeps the earliest
member of a group, so "lowest id" is the keep rule.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechfm.core.constants import DONE_SUFFIX, INDEX_SUFFIX, SAMPLE_RATE, SHARDS_DIR
from speechfm.core.errors import SpeechfmError
from speechfm.core.fingerprint import FINGERPRINT_SUFFIX

log = logging.getLogger(__name__)

COLUMNS = ("offset", "size", "frames", "source", "start", "end")  # read from each index line
DTYPES = {"shard": np.int32, "offset": np.int64, "size": np.int64, "frames": np.int64,
          "source": np.int32, "channel": np.int16, "start": np.float64, "end": np.float64}
_DATED = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})/[^/]*?(?:_(\d{4})(?:-\d{4})?)?\.[^./]+$")


def broadcast_key(source: str) -> tuple[int, str, str]:
    """Sort key of a source file: dated files (YYYYMMDDHHMM) first in time, then undated by path."""
    m = _DATED.search(source)
    if m is None:
        return (1, "", source)
    return (0, f"{m[1]}{m[2]}{m[3]}{m[4] or '0000'}", source)


@dataclass
class Shard:
    """One shard of the dataset: its path relative to the root, sidecar, and first segment row."""

    path: str  # "shards/<channel>/<unit>.tar"
    fingerprints: Path
    first_row: int  # row of its first segment in reading order
    rows: int


@dataclass
class Catalog:
    """Columns of every segment, indexed by segment id (broadcast order)."""

    root: Path
    shards: list[Shard]
    sources: list[str]
    channels: list[str]
    rank: np.ndarray  # reading row -> segment id
    shard: np.ndarray  # per id: index into shards
    offset: np.ndarray
    size: np.ndarray
    frames: np.ndarray
    source: np.ndarray  # index into sources
    channel: np.ndarray  # index into channels
    start: np.ndarray  # seconds into the source
    end: np.ndarray

    def __len__(self) -> int:
        return len(self.rank)

    def manifest_path(self, seg: int) -> str:
        """fairseq's `shard.tar:offset:size` of a segment (as in the manifests)."""
        return f"{self.shards[self.shard[seg]].path}:{self.offset[seg]}:{self.size[seg]}"

    def seconds(self, segs: np.ndarray | None = None) -> float:
        frames = self.frames if segs is None else self.frames[segs]
        return float(frames.sum()) / SAMPLE_RATE

    def describe(self, seg: int) -> dict:
        """A segment for the report: where it was broadcast and where it is stored."""
        return {"channel": self.channels[self.channel[seg]],
                "source": self.sources[self.source[seg]],
                "start": round(float(self.start[seg]), 3), "end": round(float(self.end[seg]), 3),
                "path": self.manifest_path(seg)}

    def shard_rows(self) -> Iterator[tuple[Shard, np.ndarray]]:
        """Each shard with the segment ids of its rows (index order)."""
        for shard in self.shards:
            yield shard, self.rank[shard.first_row:shard.first_row + shard.rows]


def _markers(root: Path) -> list[Path]:
    folder = root / SHARDS_DIR
    markers = sorted(folder.glob(f"*/*{DONE_SUFFIX}"))
    if not markers:
        raise SpeechfmError("no prepared units found", path=folder,
                            hint="run 'speechfm prepare' first, or give its output folder")
    return markers


def read_catalog(root: Path, need_fingerprints: bool = True) -> Catalog:
    """Read every completed unit under `root` (prepare's output). With `need_fingerprints`, a unit
    prepared without them is an error that says so."""
    shards: list[Shard] = []
    sources: dict[str, int] = {}
    channels: dict[str, int] = {}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in DTYPES}
    rows_read = 0
    for marker in _markers(root):
        try:
            record = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SpeechfmError(f"unreadable done-marker: {exc}", path=marker) from None
        if need_fingerprints and not record.get("config", {}).get("fingerprint", False):
            raise SpeechfmError(
                f"unit {record.get('channel')}/{record.get('unit')} was prepared without "
                "fingerprints", path=marker,
                hint="prepare the archive again into a new folder with this speechfm "
                     "(fingerprints are on by default), or set dedup.enabled: false")
        channel = channels.setdefault(record["channel"], len(channels))
        for name in record["shards"]:
            index = marker.parent / f"{name}{INDEX_SUFFIX}"
            lines: dict[str, list] = {k: [] for k in COLUMNS}
            try:
                with index.open(encoding="utf-8") as f:
                    for line in f:
                        if line.strip():
                            seg = json.loads(line)
                            for k in COLUMNS:
                                lines[k].append(seg[k])
            except (OSError, json.JSONDecodeError, KeyError) as exc:
                raise SpeechfmError(f"unreadable shard index: {exc}", path=index) from None
            rows = len(lines["offset"])
            for k in COLUMNS:
                values = ([sources.setdefault(v, len(sources)) for v in lines[k]]
                          if k == "source" else lines[k])
                parts[k].append(np.asarray(values, dtype=DTYPES[k]))
            parts["shard"].append(np.full(rows, len(shards), dtype=DTYPES["shard"]))
            parts["channel"].append(np.full(rows, channel, dtype=DTYPES["channel"]))
            shards.append(Shard(f"{SHARDS_DIR}/{marker.parent.name}/{name}",
                                marker.parent / f"{name}{FINGERPRINT_SUFFIX}", rows_read, rows))
            rows_read += rows
    cols = {k: (np.concatenate(v) if v else np.zeros(0, DTYPES[k])) for k, v in parts.items()}
    source_names = list(sources)
    order_of_source = np.empty(len(source_names), dtype=np.int64)
    order_of_source[sorted(range(len(source_names)),
                           key=lambda i: broadcast_key(source_names[i]))] = np.arange(
        len(source_names))
    src, start = cols["source"], cols["start"]
    order = np.lexsort((start, order_of_source[src]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    arrays = {k: v[order] for k, v in cols.items()}
    log.info("%d segments in %d shards of %d channels", len(rank), len(shards), len(channels))
    return Catalog(root=root, shards=shards, sources=source_names, channels=list(channels),
                   rank=rank, **arrays)
