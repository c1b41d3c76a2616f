"""fairseq manifests from completed units: a seeded O(n) train/valid split by hours per channel,
`train.tsv`, `valid.tsv` (all channels) and `valid_<channel>.tsv`."""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speechfm.constants import MANIFESTS_DIR, SAMPLE_RATE
from speechfm.errors import SpeechfmError
from speechfm.segment import Segment


def check_root(out: Path) -> Path:
    """The absolute output root; fairseq splits manifest paths on ':', so it must not hold one."""
    root = out.resolve()
    if ":" in str(root):
        raise SpeechfmError("the output path contains ':', which fairseq's manifests cannot hold",
                            path=root, hint="choose an output folder without ':'")
    return root


def split_valid(channels: Sequence[str], frames: np.ndarray, valid_hours: float,
                valid_share: float, seed: int) -> np.ndarray:
    """Boolean mask of validation rows: per channel, rows in a seeded random order until
    `min(valid_hours, valid_share x channel hours)` is reached (at least one row when the channel
    has two or more). One permutation and one cumulative sum per channel: O(n)."""
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


def _write(path: Path, root: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{root}\n")
        if lines:
            f.write("\n".join(lines))
            f.write("\n")
    os.replace(tmp, path)


def write_manifests(out: Path, segments: list[Segment], valid_hours: float, valid_share: float,
                    seed: int) -> dict[str, int]:
    """Write the manifests of `segments` (in shard order) under OUT/manifests; returns row counts."""
    root = check_root(out)
    folder = out / MANIFESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    frames = np.fromiter((s.frames for s in segments), dtype=np.int64, count=len(segments))
    valid = split_valid([s.channel for s in segments], frames, valid_hours, valid_share, seed)
    train: list[str] = []
    per_channel: dict[str, list[str]] = {name: [] for name in sorted({s.channel for s in segments})}
    for seg, is_valid in zip(segments, valid.tolist()):
        line = seg.manifest_line()
        (per_channel[seg.channel] if is_valid else train).append(line)
    _write(folder / "train.tsv", root, train)
    _write(folder / "valid.tsv", root, [ln for name in per_channel for ln in per_channel[name]])
    for stale in folder.glob("valid_*.tsv"):
        stale.unlink()
    counts = {"train": len(train), "valid": int(valid.sum())}
    for name, rows in per_channel.items():
        _write(folder / f"valid_{name}.tsv", root, rows)
        counts[f"valid_{name}"] = len(rows)
    return counts


def read_manifest(path: Path) -> tuple[Path, list[tuple[str, int, int, int]]]:
    """(root, [(shard, offset, size, frames)]) of a fairseq manifest, parsed as fairseq does."""
    with open(path, encoding="utf-8") as f:
        root = Path(f.readline().strip())
        rows = []
        for n, line in enumerate(f, start=2):
            if not line.strip():
                continue
            try:
                spec, frames = line.rstrip("\n").split("\t")
                shard, offset, size = spec.rsplit(":", 2)
                rows.append((shard, int(offset), int(size), int(frames)))
            except ValueError:
                raise SpeechfmError(f"line {n} is not 'shard:offset:size<TAB>frames'",
                                    path=path) from None
    return root, rows
