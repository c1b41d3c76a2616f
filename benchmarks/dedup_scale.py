"""Time and memory of `speechfm dedup` on synthetic prepared datasets of 1 M and 10 M segments.

The synthetic dataset has the files `dedup` reads (done-markers, shard indexes, fingerprint
sidecars, manifests with their segment indexes; no audio). Segment lengths follow the demo (2-30 s, mean ~6 s); unique
segments have random codes and keys; a share `repeated` of the rows are occurrences of repeated
items (adverts), `per_item` occurrences each, every one a copy of the item's codes with the
statistics measured between real copies on the demo: cropped by up to 10% at each end, ~4% of the
bits flipped, 35% of the item's keys kept (at the crop's offset, +-1 frame), the rest new.

    /work/main/.venv/bin/python benchmarks/dedup_scale.py --segments 1000000 10000000 [--data DIR]

Each size runs `speechfm dedup` as a child process: wall time, CPU time and peak RSS; then checks
that every later occurrence of an item and nothing else was removed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}

CHANNELS = 4
SEGMENTS_PER_SOURCE = 600  # ~1 broadcast hour of 6 s segments
CROP = 0.1  # a copy loses up to this share of the item at each end
KEY_SURVIVAL = 0.35  # share of an item's keys a copy still has
FLIPS = (0.8, 0.5)  # probabilities of a first and a second flipped bit per code


def _lengths(rng: np.random.Generator, n: int) -> np.ndarray:
    """Segment lengths in samples: 2 s plus an exponential tail (mean ~6 s), at most 30 s."""
    from speechfm.core.constants import SAMPLE_RATE

    seconds = np.minimum(30.0, 2.0 + rng.exponential(3.9, n))
    return (seconds * SAMPLE_RATE).astype(np.int64)


def _codes_for(frames: np.ndarray) -> np.ndarray:
    from speechfm.core.fingerprint import CODE_SECONDS, SAMPLE_RATE

    return np.maximum(1, (frames / SAMPLE_RATE / CODE_SECONDS).astype(np.int64) - 12)


def _random_keys(rng: np.random.Generator, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    from speechfm.core.fingerprint import CODE_SECONDS, DECIMATE, KEYS_PER_SECOND

    count = rng.poisson(KEYS_PER_SECOND * n_codes * CODE_SECONDS)
    pos = np.sort(rng.integers(0, DECIMATE * n_codes, count)).astype(np.uint16)
    return rng.integers(0, 2**32, count, dtype=np.uint32), pos


def _random_rows(rng: np.random.Generator, lengths: np.ndarray):
    """Random codes and keys (positions sorted within each row) for rows of `lengths` codes:
    (codes, keys, positions, keys per row)."""
    from speechfm.core.fingerprint import CODE_SECONDS, DECIMATE, KEYS_PER_SECOND

    counts = rng.poisson(KEYS_PER_SECOND * lengths * CODE_SECONDS)
    row = np.repeat(np.arange(len(lengths)), counts)
    pos = (rng.random(len(row)) * (DECIMATE * lengths[row])).astype(np.int64)
    order = np.lexsort((pos, row))
    keys = rng.integers(0, 2**32, len(row), dtype=np.uint32)
    codes = rng.integers(0, 2**32, int(lengths.sum()), dtype=np.uint32)
    return codes, keys, pos[order].astype(np.uint16), counts


def _copy(rng: np.random.Generator, codes: np.ndarray, keys: np.ndarray, pos: np.ndarray):
    """A broadcast copy of an item: cropped, bits flipped, most keys lost (see the module doc)."""
    from speechfm.core.fingerprint import DECIMATE, Fingerprint

    n = len(codes)
    lo = int(rng.integers(0, int(CROP * n) + 1))
    hi = n - int(rng.integers(0, int(CROP * n) + 1))
    out = codes[lo:hi].copy()
    for p in FLIPS:
        flip = rng.random(len(out)) < p
        out[flip] ^= (np.uint32(1) << rng.integers(0, 32, int(flip.sum())).astype(np.uint32))
    shifted = pos.astype(np.int64) - DECIMATE * lo + rng.integers(-1, 2, len(pos))
    kept = (rng.random(len(keys)) < KEY_SURVIVAL) & (shifted >= 0) & (shifted < DECIMATE * len(out))
    new_keys, new_pos = _random_keys(rng, len(out))
    take = rng.random(len(new_keys)) < 1 - KEY_SURVIVAL
    all_keys = np.r_[keys[kept], new_keys[take]]
    all_pos = np.r_[shifted[kept], new_pos[take].astype(np.int64)]
    order = np.argsort(all_pos, kind="stable")
    return Fingerprint(out, all_keys[order].astype(np.uint32), all_pos[order].astype(np.uint16))


def write_dataset(root: Path, segments: int, repeated: float = 0.1, per_item: int = 5,
                  seed: int = 0, per_shard: int = 20_000) -> dict:
    """Write a synthetic prepared dataset under `root`; returns what was planted: rows of
    occurrences per item (row = order of the train manifest), and the rows expected removed."""
    from speechfm.core import segment_index
    from speechfm.core.constants import DONE_SUFFIX, INDEX_SUFFIX, SHARDS_DIR
    from speechfm.core.fingerprint import FINGERPRINT_SUFFIX, Fingerprint, write_sidecar
    from speechfm.core.manifest import MANIFESTS_DIR

    rng = np.random.default_rng(seed)
    frames = _lengths(rng, segments)
    n_codes = _codes_for(frames)
    items = max(1, round(segments * repeated / per_item))
    occurrence_rows = rng.choice(segments, size=items * per_item, replace=False)
    item_of = np.full(segments, -1, dtype=np.int64)
    item_of[occurrence_rows] = np.repeat(np.arange(items), per_item)
    masters = {}
    for it in range(items):  # an item's master: the longest of its occurrences' lengths
        n = int(n_codes[occurrence_rows[it * per_item:(it + 1) * per_item]].max())
        masters[it] = (rng.integers(0, 2**32, n, dtype=np.uint32), *_random_keys(rng, n))
    source = np.arange(segments) // SEGMENTS_PER_SOURCE
    channel = source % CHANNELS
    hour_index = source // CHANNELS
    start = np.zeros(segments)
    for s0 in range(0, segments, SEGMENTS_PER_SOURCE):
        span = frames[s0:s0 + SEGMENTS_PER_SOURCE] / 16000 + 0.5
        start[s0:s0 + SEGMENTS_PER_SOURCE] = np.r_[0.0, np.cumsum(span)[:-1]]
    manifests = root / MANIFESTS_DIR
    manifests.mkdir(parents=True, exist_ok=True)
    train = open(manifests / "train.tsv", "w", encoding="utf-8")  # noqa: SIM115
    valid = open(manifests / "valid.tsv", "w", encoding="utf-8")  # noqa: SIM115
    for f in (train, valid):
        f.write(f"{root.resolve()}\n")
    occurrence_line: dict[int, str] = {}  # train rows of repeated items
    shards_dir = root / SHARDS_DIR
    for c in range(CHANNELS):
        rows_c = np.flatnonzero(channel == c)
        month = (hour_index[rows_c] // (24 * 28)).astype(np.int64)  # 28-day "months"
        for m in np.unique(month):
            unit_rows = rows_c[month == m]
            unit = f"{2021 + int(m) // 12:04d}-{int(m) % 12 + 1:02d}"
            folder = shards_dir / f"ch{c}"
            folder.mkdir(parents=True, exist_ok=True)
            shard_names = []
            for k, s0 in enumerate(range(0, len(unit_rows), per_shard)):
                rows = unit_rows[s0:s0 + per_shard]
                name = f"{unit}{'' if k == 0 else f'_{k}'}.tar"
                shard_names.append(name)
                rel = f"{SHARDS_DIR}/ch{c}/{name}"
                lengths = n_codes[rows]
                codes, keys, pos, key_counts = _random_rows(rng, lengths)
                code_at = np.r_[0, np.cumsum(lengths)]
                key_at = np.r_[0, np.cumsum(key_counts)]
                sizes = frames[rows] // 2
                offsets = 512 + np.r_[0, np.cumsum(512 + -(-sizes // 512) * 512)[:-1]]
                prints, index_lines = [], []
                for i, r in enumerate(rows.tolist()):
                    hour = int(hour_index[r])
                    day = hour // 24
                    src = (f"ch{c}/{2021 + day // 336:04d}/{(day // 28) % 12 + 1:02d}/"
                           f"{day % 28 + 1:02d}/ch{c}_{hour % 24:02d}00-{(hour + 1) % 24:02d}00.ts")
                    size, offset, n = int(sizes[i]), int(offsets[i]), int(frames[r])
                    index_lines.append(
                        f'{{"shard":"{rel}","member":"{r}.flac","offset":{offset},"size":{size},'
                        f'"frames":{n},"source":"{src}","start":{start[r]:.4f},'
                        f'"end":{start[r] + n / 16000:.4f},"sha256":"","channel":"ch{c}"}}\n')
                    line = f"{rel}:{offset}:{size}\t{n}"
                    is_valid = r % 1000 == 999
                    (valid if is_valid else train).write(line + "\n")
                    if item_of[r] >= 0:
                        if not is_valid:
                            occurrence_line[r] = line
                        prints.append(_copy(rng, *masters[int(item_of[r])]))
                    else:
                        ka, kb = key_at[i], key_at[i + 1]
                        prints.append(Fingerprint(codes[code_at[i]:code_at[i + 1]], keys[ka:kb],
                                                  pos[ka:kb]))
                (folder / f"{name}{INDEX_SUFFIX}").write_text("".join(index_lines),
                                                              encoding="utf-8")
                write_sidecar(folder / f"{name}{FINGERPRINT_SUFFIX}", prints)
            (folder / f"{unit}{DONE_SUFFIX}").write_text(json.dumps({
                "channel": f"ch{c}", "unit": unit, "files": [], "config": {"fingerprint": True},
                "shards": shard_names, "stats": [], "rejects": []}), encoding="utf-8")
    train.close()
    valid.close()
    for name in ("train.tsv", "valid.tsv"):  # as prepare writes them
        segment_index.build_index(manifests / name)
    # expected: of each item's occurrences, all but the earliest broadcast (source, then start)
    expected = set()
    for it in range(items):
        occ = occurrence_rows[it * per_item:(it + 1) * per_item]
        first = occ[np.lexsort((start[occ], source[occ]))[0]]
        expected |= {occurrence_line[int(r)] for r in occ
                     if r != first and int(r) in occurrence_line}
    return {"segments": segments, "items": items, "occurrences": items * per_item,
            "expected_removed": expected}


def run_dedup(data: Path, out: Path) -> dict:
    """`speechfm dedup` as a child process: wall s, CPU s, peak RSS (MB), the report."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "speechfm", "-q", "dedup", str(data), "--out",
                           str(out), "--tracking-uri", "none"], env=ENV, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = json.loads((out / "report.json").read_text())
    return {"wall_s": round(wall, 1),
            "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
            "peak_rss_mb": round(after.ru_maxrss / 1024), "report": report}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "speechfm_dedup")
    ap.add_argument("--keep", action="store_true",
                    help="keep the synthetic datasets (and reuse a kept one of the same size)")
    args = ap.parse_args()
    results = {}
    for n in args.segments:
        data = args.data / f"n{n}"
        t0 = time.perf_counter()
        if args.keep and (data / "planted.json").exists():
            planted = json.loads((data / "planted.json").read_text())
        else:
            shutil.rmtree(data, ignore_errors=True)
            planted = write_dataset(data, n)
            planted["expected_removed"] = sorted(planted["expected_removed"])
            (data / "planted.json").write_text(json.dumps(planted))
        made = time.perf_counter() - t0
        shutil.rmtree(data / "dedup", ignore_errors=True)
        res = run_dedup(data, data / "dedup")
        kept = set((data / "dedup/manifests/train.tsv").read_text().splitlines()[1:])
        removed = set((data / "manifests/train.tsv").read_text().splitlines()[1:]) - kept
        expected = set(planted["expected_removed"])
        report = res.pop("report")
        results[n] = {**res, "generate_s": round(made, 1), "keys": report["search"]["keys"],
                      "partitions": report["search"]["partitions"],
                      "pairs_compared": report["search"]["compared"],
                      "stage_seconds": report["seconds"],
                      "removed": len(removed), "expected": len(expected),
                      "recall": round(len(removed & expected) / max(1, len(expected)), 4),
                      "wrongly_removed": len(removed - expected)}
        print(n, json.dumps(results[n]), flush=True)
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
