"""The segments of completed units as compact numpy columns (24 bytes a segment), read from the
units' JSON-lines indexes by pyarrow's parser, several units at a time: what the merge needs,
without a Python object per segment (a merge of `Segment` objects took ~0.9 KB and ~26-31 us a
segment; this one 24 bytes and ~3-5 us, `docs/benchmarks.md`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechfm.core.constants import INDEX_SUFFIX
from speechfm.core.errors import SpeechfmError

FIELDS = ("shard", "offset", "size", "frames", "source")


@dataclass
class SegmentColumns:
    """Every segment of the merged units in shard order (units by channel and name, then their
    shards, then index lines). `shard` indexes `shards`, `source` indexes `sources`; the rows of
    unit u are `unit_rows[u]:unit_rows[u + 1]`."""

    channels: list[str]  # per unit
    shards: list[str]
    sources: list[str]
    source_channel: list[str]
    unit_rows: np.ndarray  # int64, units + 1
    shard: np.ndarray  # int32
    offset: np.ndarray  # int64
    size: np.ndarray  # uint32
    frames: np.ndarray  # int32
    source: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.frames)


def _read_index(path: Path) -> dict[str, np.ndarray | list[str]]:
    """One shard index as arrays (sources and shard paths dictionary-encoded)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    schema = pa.schema([("shard", pa.string()), ("offset", pa.int64()), ("size", pa.int64()),
                        ("frames", pa.int64()), ("source", pa.string())])
    try:
        if path.stat().st_size == 0:
            table = schema.empty_table()
        else:
            table = pj.read_json(path, read_options=pj.ReadOptions(use_threads=False),
                                 parse_options=pj.ParseOptions(explicit_schema=schema,
                                                               unexpected_field_behavior="ignore"))
    except (OSError, pa.ArrowException) as exc:
        raise SpeechfmError(f"unreadable shard index: {exc}", path=path,
                            hint="delete the unit's .done.json to rebuild the unit") from None
    missing = [name for name in FIELDS if table[name].null_count]
    if missing:
        raise SpeechfmError(f"shard index lines without {', '.join(missing)}", path=path,
                            hint="delete the unit's .done.json to rebuild the unit")
    out: dict[str, Any] = {}
    for name in ("shard", "source"):
        encoded = pc.dictionary_encode(table[name].combine_chunks())
        out[name] = encoded.indices.to_numpy(zero_copy_only=False)
        out[name + "s"] = encoded.dictionary.to_pylist()
    for name in ("offset", "size", "frames"):
        out[name] = table[name].to_numpy()
    return out


def read_columns(folders: list[Path], records: list[dict[str, Any]],
                 workers: int = 2) -> SegmentColumns:
    """The columns of every segment of the units whose done-markers are `records` (their shard
    folders `folders`); `workers` threads parse indexes at once (pyarrow releases the GIL)."""
    counts = [sum(item["segments"] for item in rec["stats"]) for rec in records]
    unit_rows = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
    n = int(unit_rows[-1])
    cols = SegmentColumns(channels=[rec["channel"] for rec in records], shards=[], sources=[], source_channel=[], unit_rows=unit_rows,
                          shard=np.empty(n, np.int32), offset=np.empty(n, np.int64),
                          size=np.empty(n, np.uint32), frames=np.empty(n, np.int32),
                          source=np.empty(n, np.int32))
    jobs = [(u, folder / f"{shard}{INDEX_SUFFIX}")
            for u, (folder, rec) in enumerate(zip(folders, records)) for shard in rec["shards"]]
    shard_codes: dict[str, int] = {}
    unit_sources: dict[str, int] = {}
    parsed = [0] * len(records)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for (u, _path), part in zip(jobs, _bounded_map(pool, _read_index, [j[1] for j in jobs],
                                                       ahead=2 * max(1, workers))):
            if parsed[u] == 0:
                unit_sources = {}  # a new unit: sources never span units
            k = len(part["frames"])
            row = int(unit_rows[u]) + parsed[u]
            parsed[u] += k
            if parsed[u] > counts[u]:
                break
            if not k:
                continue
            shard_map = np.array([shard_codes.setdefault(s, len(shard_codes))
                                  for s in part["shards"]], dtype=np.int32)
            source_map = np.array([_source_code(cols, unit_sources, s, records[u]["channel"])
                                   for s in part["sources"]], dtype=np.int32)
            sl = slice(row, row + k)
            cols.shard[sl], cols.source[sl] = shard_map[part["shard"]], source_map[part["source"]]
            cols.offset[sl], cols.size[sl], cols.frames[sl] = (part["offset"], part["size"],
                                                               part["frames"])
    for u, rec in enumerate(records):
        if parsed[u] != counts[u]:
            raise SpeechfmError(f"the shard indexes of unit {rec['channel']}/{rec['unit']} hold "
                                f"{parsed[u]} segments, its done-marker counts {counts[u]}",
                                path=folders[u], hint=f"delete {rec['unit']}.done.json there to "
                                "rebuild the unit")
    cols.shards = list(shard_codes)
    return cols


def _bounded_map(pool: ThreadPoolExecutor, fn: Callable[[Path], Any], items: list[Path],
                 ahead: int) -> Iterator[Any]:
    """`pool.map` in order with at most `ahead` results waiting (parsed tables are large)."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _source_code(cols: SegmentColumns, unit_sources: dict[str, int], source: str,
                 channel: str) -> int:
    """Global number of a unit's source file, in order of first appearance."""
    code = unit_sources.get(source)
    if code is None:
        code = unit_sources[source] = len(cols.sources)
        cols.sources.append(source)
        cols.source_channel.append(channel)
    return code
