"""fairseq manifests from completed units: a seeded O(n) train/valid split by hours per channel,
drawn by source file (broadcast hour) so that neighbouring segments of one programme never land on
both sides; `train.tsv`, `valid.tsv` (all channels), `valid_<channel>.tsv`, each with its
memory-mapped segment index (`<name>.idx/`, `speechfm.core.segment_index`) for training at scale."""

from __future__ import annotations

import logging
import os
import shutil
import zlib
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

import numpy as np

from speechfm.core import segment_index
from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.manifest import MANIFESTS_DIR, check_root
from speechfm.prepare.columns import SegmentColumns

log = logging.getLogger(__name__)


def split_valid(channels: Sequence[str], frames: np.ndarray, valid_hours: float,
                valid_share: float, seed: int) -> np.ndarray:
    """Boolean mask of validation items (source files: `channels[i]` and `frames[i]` of source i):
    per channel, items in a seeded random order until `min(valid_hours, valid_share x channel
    hours)` is reached (at least one item when the channel has two or more, never all of them).
    One permutation and one cumulative sum per channel: O(n)."""
    mask = np.zeros(len(frames), dtype=bool)
    lookup: dict[str, int] = {}
    codes = np.fromiter((lookup.setdefault(c, len(lookup)) for c in channels), dtype=np.int64,
                        count=len(frames))
    names = list(lookup)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    for c, name in enumerate(names):
        rows = order[bounds[c]:bounds[c + 1]]
        if len(rows) < 2:
            log.warning("channel %s has a single source file: it stays in training and the "
                        "channel gets no validation set (a file is never split)", name)
            continue
        ch_frames = frames[rows]
        target = min(valid_hours * 3600 * SAMPLE_RATE, valid_share * float(ch_frames.sum()))
        if target <= 0:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(str(name).encode())])
        perm = rng.permutation(len(rows))
        k = int(np.searchsorted(np.cumsum(ch_frames[perm]), target)) + 1
        mask[rows[perm[:min(max(k, 1), len(rows) - 1)]]] = True
    return mask


def valid_rows(cols: SegmentColumns, valid_hours: float, valid_share: float,
               seed: int) -> np.ndarray:
    """Boolean mask of the validation segments: whole source files drawn by `split_valid`."""
    per_source = np.zeros(len(cols.sources), dtype=np.int64)
    for a in range(0, len(cols), segment_index.CHUNK):  # exact integer sums, little memory
        part = slice(a, a + segment_index.CHUNK)
        per_source += np.bincount(cols.source[part], weights=cols.frames[part],
                                  minlength=len(cols.sources)).astype(np.int64)
    chosen = split_valid(cols.source_channel, per_source, valid_hours, valid_share, seed)
    return chosen[cols.source]


LINES_PER_WRITE = 100_000


def _lines(cols: SegmentColumns, rows: np.ndarray) -> str:
    """Manifest lines (`shard:offset:size<TAB>frames`) of the given rows."""
    shards = cols.shards
    return "".join(f"{shards[c]}:{o}:{s}\t{f}\n" for c, o, s, f in zip(
        cols.shard[rows].tolist(), cols.offset[rows].tolist(), cols.size[rows].tolist(),
        cols.frames[rows].tolist()))


def write_manifests(out: Path, cols: SegmentColumns, valid_hours: float, valid_share: float,
                    seed: int) -> dict[str, int]:
    """Write the manifests of `cols` (in shard order) under OUT/manifests, streaming, with their
    segment indexes; returns row counts."""
    root = check_root(out)
    folder = out / MANIFESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    valid = valid_rows(cols, valid_hours, valid_share, seed)
    for stale in [*folder.glob("valid_*.tsv"), *folder.glob(f"valid_*{segment_index.SUFFIX}")]:
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    bounds = cols.unit_rows.tolist()
    unit_channel = [ch if bounds[u + 1] > bounds[u] else None for u, ch in enumerate(cols.channels)]
    with ExitStack() as stack:
        def open_part(name: str) -> TextIO:
            f = stack.enter_context(open(folder / f"{name}.tsv.part", "w", encoding="utf-8"))
            f.write(f"{root}\n")
            return f

        train, all_valid = open_part("train"), open_part("valid")
        channel_file, channel = None, None
        for u, ch in enumerate(unit_channel):
            if ch is None:
                continue
            if ch != channel:
                channel_file, channel = open_part(f"valid_{ch}"), ch
            lo, hi = bounds[u], bounds[u + 1]
            for a in range(lo, hi, LINES_PER_WRITE):
                rows = np.arange(a, min(hi, a + LINES_PER_WRITE))
                is_valid = valid[rows]
                train.write(_lines(cols, rows[~is_valid]))
                text = _lines(cols, rows[is_valid])
                all_valid.write(text)
                channel_file.write(text)
    names = ["train", "valid", *sorted({f"valid_{ch}" for ch in unit_channel if ch is not None})]
    counts = {}
    for name in names:
        tsv = folder / f"{name}.tsv"
        os.replace(folder / f"{name}.tsv.part", tsv)
        if name == "train":
            rows = ~valid
        elif name == "valid":
            rows = valid
        else:
            rows = valid & _channel_rows(cols, unit_channel, name.removeprefix("valid_"))
        segment_index.write_index(tsv, cols.shards, cols.shard, cols.offset, cols.size,
                                  cols.frames, rows=rows)
        counts[name] = int(rows.sum())
    return counts


def _channel_rows(cols: SegmentColumns, unit_channel: list[str | None], channel: str
                  ) -> np.ndarray:
    mask = np.zeros(len(cols), dtype=bool)
    for u, ch in enumerate(unit_channel):
        if ch == channel:
            mask[int(cols.unit_rows[u]):int(cols.unit_rows[u + 1])] = True
    return mask
