"""Near-duplicate search without comparing every pair: keys -> sorted buckets -> votes -> aligned
comparison -> groups.

1. Every key of every segment (`speechfm.core.fingerprint`) is streamed from the sidecars into hash
   partitions on disk, each small enough to sort in memory (`keys_per_pass`).
2. In a partition sorted by (key, segment), segments sharing a key form a bucket; each member is
   paired with the bucket's earliest `fanout` members, with the offset between the two keys.
   Cost O(keys x fanout), whatever the bucket sizes.
3. A pair is compared when `min_votes` of its shared keys agree on the offset (within one code).
4. The comparison aligns the two code sequences at that offset (+-1 code) and counts the codes
   inside 0.5 s windows whose bit error rate is under `max_ber`; two segments are linked when that
   covers `min_overlap` of each (of the longer one): a short jingle inside a long segment is not
   a copy of it.
5. Groups are stars around their earliest member: in broadcast order, a segment that is not yet in
   a group starts one and takes in every linked later segment not yet taken. Every member thus
   matches the kept segment itself, never only through a chain.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechfm.core.errors import SpeechfmError
from speechfm.core.fingerprint import DECIMATE, KEYS_PER_SECOND, read_sidecar
from speechfm.dedup.catalog import Catalog
from speechfm.dedup.config import DedupConfig

log = logging.getLogger(__name__)

POSTING = np.dtype([("key", "<u4"), ("seg", "<u4"), ("pos", "<u2")])
_PARTITION_HASH = np.uint32(0x85EBCA6B)  # independent of the key selector's hash


@dataclass
class Search:
    """What the search found, and what it cost."""

    rep: np.ndarray  # per segment: the id of its group's kept member, or -1 (in no group)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def partitions_for(catalog: Catalog, keys_per_pass: int) -> int:
    """Partitions (a power of two) so that each holds at most ~keys_per_pass keys (an estimate
    from the audio seconds, with a margin of 2)."""
    expected = 2 * catalog.seconds() * KEYS_PER_SECOND
    return 1 << max(0, math.ceil(math.log2(max(1.0, expected / keys_per_pass))))


def write_postings(catalog: Catalog, workdir: Path, parts: int) -> int:
    """Stream every shard's keys into `parts` files of POSTING records; returns the key count."""
    shift = np.uint32(32 - int(math.log2(parts))) if parts > 1 else None
    files = [open(workdir / f"keys_{p}.bin", "wb") for p in range(parts)]  # noqa: SIM115
    total = 0
    try:
        for shard, ids in catalog.shard_rows():
            side = read_sidecar(shard.fingerprints, codes=False)
            if len(side) != shard.rows:
                raise SpeechfmError(f"fingerprints for {len(side)} segments, index has "
                                    f"{shard.rows}", path=shard.fingerprints,
                                    hint="the unit is damaged: delete its done-marker and run "
                                         "'speechfm prepare' again to rebuild it")
            rec = np.empty(len(side.keys), POSTING)
            rec["key"], rec["pos"] = side.keys, side.key_pos
            rec["seg"] = np.repeat(ids, np.diff(side.key_start))
            total += len(rec)
            if shift is None:
                files[0].write(rec.tobytes())
                continue
            part = (rec["key"] * _PARTITION_HASH) >> shift
            order = np.argsort(part, kind="stable")
            bounds = np.searchsorted(part[order], np.arange(parts + 1))
            for p in range(parts):
                files[p].write(rec[order[bounds[p]:bounds[p + 1]]].tobytes())
    finally:
        for f in files:
            f.close()
    return total


def bucket_edges(rec: np.ndarray, fanout: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, offset) for segments a < b sharing a key, b paired with the bucket's `fanout`
    earliest members; offset = b's key position - a's, in 16 ms frames. Pass `rec` without
    other references: it is released as soon as it is sorted (~30 bytes a key at the peak)."""
    combined = (rec["key"].astype(np.uint64) << np.uint64(32)) | rec["seg"].astype(np.uint64)
    order = np.argsort(combined)  # a key repeated in a segment keeps one of its positions
    pos = rec["pos"][order]
    del rec
    combined = combined[order]
    del order
    if not len(combined):
        return np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, np.int16)
    first = np.empty(len(combined), dtype=bool)
    first[0] = True
    np.not_equal(combined[1:], combined[:-1], out=first[1:])
    combined, pos = combined[first], pos[first]
    del first
    key = combined >> np.uint64(32)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    del key
    sizes = np.diff(np.r_[starts, len(combined)])
    shared = sizes >= 2  # most keys are in one segment only: drop them before pairing
    starts, sizes = starts[shared], sizes[shared]
    rows = np.repeat(starts - np.r_[0, np.cumsum(sizes)[:-1]], sizes) + np.arange(sizes.sum())
    seg = (combined[rows] & np.uint64(0xFFFFFFFF)).astype(np.int64)
    pos = pos[rows].astype(np.int32)
    del combined, rows
    run_start = np.repeat(np.r_[0, np.cumsum(sizes)[:-1]], sizes)
    in_run = np.arange(len(seg)) - run_start
    a, b, off = [], [], []
    for j in range(fanout):
        later = np.flatnonzero(in_run > j)
        partner = run_start[later] + j
        a.append(seg[partner].astype(np.uint32))  # compact: all pairs are held until the vote
        b.append(seg[later].astype(np.uint32))
        off.append((pos[later] - pos[partner]).astype(np.int16))
    return np.concatenate(a), np.concatenate(b), np.concatenate(off)


def vote(a: np.ndarray, b: np.ndarray, off: np.ndarray,
         min_votes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs whose shared keys agree on an offset: (a, b, code offset, votes) with at least
    `min_votes` keys within two adjacent 64 ms bins (the offset of a key is only known to a few
    16 ms frames: smoothing makes neighbouring frames share codes)."""
    pair = (a.astype(np.uint64) << np.uint64(32)) | b.astype(np.uint64)
    lag = np.floor_divide(off, DECIMATE).astype(np.int16)
    order = np.lexsort((lag, pair))
    pair, lag = pair[order], lag[order]
    new = np.ones(len(pair), dtype=bool)
    new[1:] = (pair[1:] != pair[:-1]) | (lag[1:] != lag[:-1])
    first = np.flatnonzero(new)
    up, ul = pair[first], lag[first]
    count = np.diff(np.r_[first, len(pair)])
    adjacent = np.zeros(len(up), dtype=bool)
    adjacent[:-1] = (up[1:] == up[:-1]) & (ul[1:] == ul[:-1] + 1)
    votes = count + np.where(adjacent, np.r_[count[1:], 0], 0)
    best = np.lexsort((-votes, up))  # per pair, the window with most votes first
    head = best[np.r_[True, up[best][1:] != up[best][:-1]]] if len(best) else best
    keep = head[votes[head] >= min_votes]
    pa = (up[keep] >> np.uint64(32)).astype(np.int64)
    pb = (up[keep] & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return pa, pb, ul[keep].astype(np.int64), votes[keep]


def matched_codes(x: np.ndarray, y: np.ndarray, lag: int, window: int, max_ber: float) -> int:
    """Codes of `x` (aligned with y[i + lag]) inside a `window` of codes whose mean bit error rate
    is at most `max_ber`."""
    i0, j0 = max(0, -lag), max(0, lag)
    n = min(len(x) - i0, len(y) - j0)
    if n <= 0:
        return 0
    errors = np.bitwise_count(x[i0:i0 + n] ^ y[j0:j0 + n]).astype(np.int32)
    limit = max_ber * 32 * min(window, n)
    if n <= window:
        return n if errors.sum() <= limit else 0
    sums = np.convolve(errors, np.ones(window, np.int32), mode="valid")
    good = np.flatnonzero(sums <= limit)
    if not len(good):
        return 0
    cover = np.zeros(n + 1, dtype=np.int32)
    cover[good] += 1  # each window start once: plain fancy-index adds are exact
    cover[good + window] -= 1
    return int(np.count_nonzero(np.cumsum(cover[:n])))


def load_codes(catalog: Catalog, wanted: np.ndarray) -> dict[int, np.ndarray]:
    """The codes of the segments in `wanted` (only shards that hold one are read)."""
    want = np.zeros(len(catalog), dtype=bool)
    want[wanted] = True
    codes: dict[int, np.ndarray] = {}
    for shard, ids in catalog.shard_rows():
        rows = np.flatnonzero(want[ids])
        if not len(rows):
            continue
        side = read_sidecar(shard.fingerprints)
        for row in rows.tolist():
            codes[int(ids[row])] = side.codes_of(row).copy()
    return codes


def star_groups(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per segment, its group's kept member (the earliest; see the module doc), or -1."""
    rep = np.full(n, -1, dtype=np.int64)
    order = np.lexsort((b, a))
    for x, y in zip(a[order].tolist(), b[order].tolist()):
        if rep[x] in (-1, x) and rep[y] == -1:
            rep[x] = rep[y] = x
    return rep


def search(catalog: Catalog, config: DedupConfig, workdir: Path) -> Search:
    """Groups of near-duplicate segments of `catalog`; temporary key partitions go to `workdir`."""
    found = Search(rep=np.full(len(catalog), -1, dtype=np.int64))
    clock = time.perf_counter()
    parts = partitions_for(catalog, config.keys_per_pass)
    found.counts["keys"] = write_postings(catalog, workdir, parts)
    found.counts["partitions"] = parts
    edges: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for p in range(parts):
        path = workdir / f"keys_{p}.bin"
        edges.append(bucket_edges(np.fromfile(path, POSTING), config.fanout))  # no other ref
        path.unlink()
    a, b, off = (np.concatenate(parts_) for parts_ in zip(*edges))
    found.counts["key_pairs"] = len(a)
    a, b, lag, _ = vote(a, b, off, config.min_votes)
    found.counts["compared"] = len(a)
    found.seconds["keys"] = time.perf_counter() - clock

    clock = time.perf_counter()
    codes = load_codes(catalog, np.unique(np.r_[a, b]))
    linked = np.zeros(len(a), dtype=bool)
    for i, (x, y, d) in enumerate(zip(a.tolist(), b.tolist(), lag.tolist())):
        cx, cy = codes[x], codes[y]
        need = max(config.window, config.min_overlap * max(len(cx), len(cy)))
        # the votes put the lag in [d, d + 2) codes: try the three whole lags around it
        linked[i] = any(matched_codes(cx, cy, d + k, config.window, config.max_ber) >= need
                        for k in (0, 1, 2))
    found.counts["linked"] = int(linked.sum())
    found.seconds["compare"] = time.perf_counter() - clock
    found.rep = star_groups(len(catalog), a[linked], b[linked])
    log.info("%d keys in %d partitions -> %d pairs compared -> %d linked",
             found.counts["keys"], parts, len(a), found.counts["linked"])
    return found
