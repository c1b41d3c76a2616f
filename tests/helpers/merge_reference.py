"""Test and benchmark helpers for prepare's merge at scale.

`reference_merge`: a straightforward in-memory implementation of the merge's rules (a `Segment`
per row, Python loops and dicts: what the merge did before it streamed), to compare the streaming
merge's outputs with, byte for byte. `synthesize_units`: unit folders exactly as prepare leaves
them (done-markers and JSON-lines shard indexes, no audio), with any number of segments.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from speechfm.core.constants import INDEX_SUFFIX, SAMPLE_RATE
from speechfm.core.segment import Segment, read_index
from speechfm.prepare.config import PrepareConfig
from speechfm.prepare.discover import Unit
from speechfm.prepare.units import done_path, unit_dir


def reference_stats(records: list[dict[str, Any]], segments: list[Segment],
                    max_seconds: float) -> dict[str, Any]:
    """The statistics of `Segment` objects. Their arithmetic (`prepare.stats.compute`) is the code
    prepare had before the streaming merge; only its input changed (a column of frame counts
    instead of `Segment`s), which is what this reference checks."""
    from speechfm.prepare.stats import compute

    return compute(records, np.array([s.frames for s in segments], dtype=np.int64), max_seconds)


def reference_valid_sources(segments: list[Segment], config: PrepareConfig) -> set[str]:
    """Per channel, whole source files in a seeded random order until min(valid_hours,
    valid_share x channel hours) is reached; at least one, never all of a channel's sources."""
    sources: dict[str, list[Any]] = {}
    for seg in segments:
        sources.setdefault(seg.source, [seg.channel, 0])[1] += seg.frames
    by_channel: dict[str, list[tuple[str, int]]] = {}
    for source, (channel, frames) in sources.items():
        by_channel.setdefault(channel, []).append((source, frames))
    chosen: set[str] = set()
    for channel, items in by_channel.items():
        if len(items) < 2:
            continue
        target = min(config.valid_hours * 3600 * SAMPLE_RATE,
                     config.valid_share * sum(f for _, f in items))
        if target <= 0:
            continue
        rng = np.random.default_rng([config.seed, zlib.crc32(channel.encode())])
        picked, total = [], 0
        for i in rng.permutation(len(items)).tolist():
            if total >= target:
                break
            picked.append(items[i][0])
            total += items[i][1]
        chosen.update(picked[:max(1, min(len(picked), len(items) - 1))])
    return chosen


def reference_merge(out: Path, units: list[Unit], config: PrepareConfig) -> dict[str, bytes]:
    """Every file the merge writes (manifests, rejects.jsonl, stats.json), as bytes, by name."""
    records = [json.loads(done_path(out, u).read_text(encoding="utf-8")) for u in units]
    segments = [seg for unit, rec in zip(units, records) for shard in rec["shards"]
                for seg in read_index(unit_dir(out, unit) / f"{shard}{INDEX_SUFFIX}")]
    valid_sources = reference_valid_sources(segments, config)
    root = str(out.resolve())
    train: list[str] = []
    per_channel: dict[str, list[str]] = {ch: [] for ch in sorted({s.channel for s in segments})}
    for seg in segments:
        (per_channel[seg.channel] if seg.source in valid_sources else train).append(
            f"{seg.shard}:{seg.offset}:{seg.size}\t{seg.frames}")

    def text(lines: list[str]) -> bytes:
        return "".join(f"{line}\n" for line in [root, *lines]).encode()

    files = {"manifests/train.tsv": text(train),
             "manifests/valid.tsv": text([ln for ch in per_channel for ln in per_channel[ch]])}
    files.update({f"manifests/valid_{ch}.tsv": text(lines) for ch, lines in per_channel.items()})
    rejects = [{"channel": r["channel"], "unit": r["unit"], **x} for r in records
               for x in r["rejects"]]
    files["rejects.jsonl"] = "".join(json.dumps(x, ensure_ascii=False) + "\n"
                                     for x in rejects).encode()
    stats = reference_stats(records, segments, config.max_seconds)
    files["stats.json"] = json.dumps(stats, indent=1).encode()
    return files


TAR_BLOCK = 512


def synthesize_units(out: Path, segments: int, channels: int = 4, files_per_unit: int = 32,
                     segments_per_file: int = 600, shard_max_bytes: int = 2 * 1024**3,
                     seed: int = 0) -> list[Unit]:
    """Unit folders under `out/shards` as prepare leaves them, with `segments` index rows in all
    (lengths 2-30 s, mean ~5.9 s; offsets and sizes of a real tar layout; no audio), a reject in
    every tenth unit. Returns the units in prepare's order."""
    rng = np.random.default_rng(seed)
    settings = PrepareConfig().unit_settings()
    per_unit = files_per_unit * segments_per_file
    n_units = -(-segments // per_unit)
    units: list[Unit] = []
    left = segments
    for u in range(n_units):
        channel = f"ch{u % channels:02d}"
        month = u // channels
        name = f"{2000 + month // 12}-{month % 12 + 1:02d}"
        unit_rows = min(per_unit, left)
        left -= unit_rows
        files, stats, shards = [], [], []
        folder = out / "shards" / channel
        folder.mkdir(parents=True, exist_ok=True)
        shard_file, offset, lines_in_shard = None, 0, 0
        for k in range(-(-unit_rows // segments_per_file)):
            day, hour = k // 24 + 1, k % 24
            source = f"{channel}/{name[:4]}/{name[5:]}/{day:02d}/{channel}_{hour:02d}00-" \
                     f"{(hour + 1) % 24:02d}00.ts"
            files.append(source)
            rows = min(segments_per_file, unit_rows - k * segments_per_file)
            frames = np.minimum(32_000 + rng.exponential(3.9 * SAMPLE_RATE, rows).astype(np.int64),
                                30 * SAMPLE_RATE)
            sizes = (frames * rng.uniform(0.9, 1.3, rows)).astype(np.int64)
            starts = np.cumsum(frames + SAMPLE_RATE // 4) - frames
            lines = []
            for f_, s_, a_ in zip(frames.tolist(), sizes.tolist(), starts.tolist()):
                if shard_file is None or (offset + s_ > shard_max_bytes and lines_in_shard):
                    if shard_file is not None:
                        shard_file.write("".join(lines))
                        shard_file.close()
                        lines = []
                    shard = f"{name}{'' if not shards else f'_{len(shards)}'}.tar"
                    shards.append(shard)
                    shard_file = open(folder / f"{shard}{INDEX_SUFFIX}", "w",  # noqa: SIM115
                                      encoding="utf-8")
                    offset, lines_in_shard = 0, 0
                b_ = a_ + f_
                member = f"{source.split('/', 1)[1][:-3]}/{a_ * 1000 // SAMPLE_RATE:09d}-" \
                         f"{b_ * 1000 // SAMPLE_RATE:09d}.flac"
                offset += TAR_BLOCK
                lines.append(
                    f'{{"shard":"shards/{channel}/{shards[-1]}","member":"{member}",'
                    f'"offset":{offset},"size":{s_},"frames":{f_},"source":"{source}",'
                    f'"start":{round(a_ / SAMPLE_RATE, 4)},"end":{round(b_ / SAMPLE_RATE, 4)},'
                    f'"sha256":"{zlib.crc32(member.encode()):064x}","channel":"{channel}"}}\n')
                offset += -(-s_ // TAR_BLOCK) * TAR_BLOCK
                lines_in_shard += 1
            shard_file.write("".join(lines))
            kept = int(frames.sum()) / SAMPLE_RATE
            seconds = round(float(starts[-1] + frames[-1]) / SAMPLE_RATE + 5, 4)
            stats.append({"source": source, "seconds": seconds, "kept": round(kept, 4),
                          "dropped_short": round(rng.uniform(0, 30), 4), "segments": rows})
        if shard_file is not None:
            shard_file.close()
        rejects = []
        if u % 10 == 0:  # a broken broadcast hour: listed in the unit, no statistics
            files.append(f"{channel}/{name[:4]}/{name[5:]}/28/{channel}_bad.ts")
            rejects.append({"source": files[-1], "reason": "Invalid data found when processing "
                            "input", "action": "skipped"})
        record = {"channel": channel, "unit": name, "files": files, "config": settings,
                  "shards": shards, "stats": stats, "rejects": rejects}
        done_path(out, Unit(channel, name, tuple(files))).write_text(
            json.dumps(record, ensure_ascii=False), encoding="utf-8")
        units.append(Unit(channel, name, tuple(files)))
    return sorted(units, key=lambda unit: (unit.channel, unit.name))
