"""A compact, memory-mapped columnar index of a fairseq audio manifest, for training at scale.

fairseq's `FileAudioDataset` keeps every manifest path as a string in each training process
(~155 MB per million rows per rank). The index holds the same entries as numpy columns in files
beside the manifest (`train.tsv` -> `train.idx/`) that every rank and loader worker maps read-only,
so a node keeps one copy in its page cache. Built from any of our fairseq manifests (tar-member
entries `shard.tar:offset:size<TAB>frames` and plain files `path.flac<TAB>frames`), parsed by the
same rules as `FileAudioDataset`.

Files of `<name>.idx/` (row = manifest line after the root line):
- `meta.json`: format, version, rows, runs, paths, the manifest's body size (to detect staleness)
- `offset.npy` (uint64), `size.npy` (uint32; `WHOLE_FILE` for a plain file), `frames.npy` (int64)
- `run_start.npy` (int64), `run_path.npy` (uint32): rows `run_start[r]..` read path `run_path[r]`
- `paths.bin` (UTF-8 paths, concatenated) and `path_offsets.npy` (uint64, paths + 1)
That is 20 bytes a row plus 12 a run (a run: consecutive rows of one path, one per tar shard).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechfm.core.errors import SpeechfmError

log = logging.getLogger(__name__)

SUFFIX = ".idx"
FORMAT = "speechfm-segment-index"
VERSION = 1
META = "meta.json"
PATHS = "paths.bin"
WHOLE_FILE = int(np.iinfo(np.uint32).max)
"""`size` of an entry that is a whole audio file, not a slice of a tar shard."""
AUDIO_FILE_SUFFIXES = (".npy", ".wav", ".flac", ".ogg")
"""Entries with these suffixes are plain files even with ':' in them (fairseq's `parse_path`)."""
COLUMNS = {"offset": np.uint64, "size": np.uint32, "frames": np.int64, "run_start": np.int64,
           "run_path": np.uint32, "path_offsets": np.uint64}
HINT = "delete the folder: 'speechfm pretrain'/'finetune' build a missing index, or run prepare"


class StaleIndexError(SpeechfmError):
    """The index is missing or was built from another version of the manifest (rebuildable)."""


def index_dir(manifest: Path) -> Path:
    """Where the index of a manifest lives: `train.tsv` -> `train.idx`."""
    return manifest.with_suffix(SUFFIX)


def _body_bytes(manifest: Path) -> int:
    """Bytes of the manifest after its root line (moving the data root keeps an index valid)."""
    with open(manifest, "rb") as f:
        first = len(f.readline())
        return os.fstat(f.fileno()).st_size - first


@dataclass
class Entries:
    """A manifest's entries as columns: distinct paths in order of first use, and per row."""

    paths: list[str]
    path_ids: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray
    frames: np.ndarray


def parse_manifest(manifest: Path) -> tuple[str, Entries]:
    """(root, entries) of a fairseq manifest, split as `FileAudioDataset` splits each line."""
    ids: dict[str, int] = {}
    path_ids: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    frames: list[int] = []
    n = 1
    try:
        with open(manifest, encoding="utf-8") as f:
            root = f.readline().strip()
            for n, line in enumerate(f, start=2):
                items = line.strip().split("\t")
                if len(items) != 2:
                    raise ValueError("no single TAB")
                entry = items[0]
                if os.path.splitext(entry)[1] in AUDIO_FILE_SUFFIXES:
                    path, ptr = entry, []
                else:
                    path, *ptr = entry.split(":")
                if len(ptr) not in (0, 2):
                    raise ValueError(f"{len(ptr)} ':' in the path")
                offset, size = (int(ptr[0]), int(ptr[1])) if ptr else (0, WHOLE_FILE)
                if offset < 0 or not 0 <= size <= WHOLE_FILE or (ptr and size == WHOLE_FILE):
                    raise ValueError("offset or size out of range")
                path_ids.append(ids.setdefault(path, len(ids)))
                offsets.append(offset)
                sizes.append(size)
                frames.append(int(items[1]))
    except ValueError as exc:
        raise SpeechfmError(f"line {n} is not 'path<TAB>frames' or 'shard:offset:size<TAB>frames'"
                            f" ({exc})", path=manifest) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpeechfmError(f"cannot read the manifest: {exc}", path=manifest) from None
    return root, Entries(list(ids), np.array(path_ids, dtype=np.int64),
                         np.array(offsets, dtype=np.uint64), np.array(sizes, dtype=np.uint32),
                         np.array(frames, dtype=np.int64))


CHUNK = 1 << 20
"""Rows copied at a time while writing an index (bounds the extra memory to a few MB)."""


def _chunks(column: np.ndarray, rows: np.ndarray | None) -> Iterator[np.ndarray]:
    """The selected values of a column, `CHUNK` input rows at a time."""
    for a in range(0, len(column), CHUNK):
        part = column[a:a + CHUNK]
        yield part if rows is None else part[rows[a:a + CHUNK]]


def write_index(manifest: Path, paths: Sequence[str], path_ids: np.ndarray, offsets: np.ndarray,
                sizes: np.ndarray, frames: np.ndarray, rows: np.ndarray | None = None) -> Path:
    """Write the index of `manifest` (already written) from the columns of its rows, or of the
    rows selected by the boolean mask `rows` of longer columns; `path_ids` index `paths`. Paths
    are renumbered in order of first use, so any caller writes the same files. Columns are copied
    in chunks: the extra memory does not grow with the rows."""
    n = len(path_ids) if rows is None else int(np.count_nonzero(rows))
    starts, firsts, last, done = [], [], None, 0
    for ids in _chunks(np.asarray(path_ids), rows):
        if len(ids):
            change = np.flatnonzero(np.concatenate([[ids[0] != last], ids[1:] != ids[:-1]]))
            starts.append(change + done)
            firsts.append(ids[change])
            last, done = ids[-1], done + len(ids)
    run_start = np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)
    order: dict[int, int] = {}
    run_path = np.array([order.setdefault(p, len(order))
                         for p in (np.concatenate(firsts).tolist() if firsts else [])],
                        dtype=np.uint32)
    blobs = [paths[p].encode("utf-8") for p in order]
    path_offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs], dtype=np.int64)])
    target = index_dir(manifest)
    tmp = target.with_name(f"{target.name}.part-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, column in (("offset", offsets), ("size", sizes), ("frames", frames)):
        if len(column) != len(path_ids):
            raise ValueError(f"column {name} has {len(column)} rows, not {len(path_ids)}")
        _save_chunked(tmp / f"{name}.npy", COLUMNS[name], n, _chunks(np.asarray(column), rows))
    for name, values in (("run_start", run_start), ("run_path", run_path),
                         ("path_offsets", path_offsets)):
        np.save(tmp / f"{name}.npy", np.ascontiguousarray(values, dtype=COLUMNS[name]))
    (tmp / PATHS).write_bytes(b"".join(blobs))
    meta = {"format": FORMAT, "version": VERSION, "manifest": manifest.name, "rows": n,
            "runs": len(run_start), "paths": len(blobs), "body_bytes": _body_bytes(manifest)}
    (tmp / META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    _publish(tmp, target)
    return target


def _save_chunked(path: Path, dtype: type, n: int, parts: Iterator[np.ndarray]) -> None:
    """`np.save` of `n` values arriving in parts (the same file, without the whole array)."""
    if n == 0:
        np.save(path, np.zeros(0, dtype=dtype))
        return
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n,))
    pos = 0
    for part in parts:
        out[pos:pos + len(part)] = part
        pos += len(part)
    out.flush()
    del out


def _publish(tmp: Path, target: Path) -> None:
    """Replace `target` by the folder `tmp`; when another builder got there first, keep theirs."""
    aside = target.with_name(f"{target.name}.old-{os.getpid()}")
    if target.exists():
        os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except OSError:  # a concurrent builder published the same index meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(aside, ignore_errors=True)


def build_index(manifest: Path) -> Path:
    """Build (or rebuild) the index of any fairseq manifest of ours; returns its folder."""
    root, entries = parse_manifest(manifest)
    if ":" in root:
        raise SpeechfmError("the manifest's root contains ':', which fairseq cannot read",
                            path=manifest)
    return write_index(manifest, entries.paths, entries.path_ids, entries.offsets, entries.sizes,
                       entries.frames)


def _check_size(path: Path, expected: int) -> None:
    size = path.stat().st_size
    if size != expected:
        raise SpeechfmError(f"index file is {size} bytes, expected {expected} (truncated or "
                            "corrupted)", path=path, hint=HINT)


def _column(path: Path, dtype: type, length: int) -> np.ndarray:
    """A read-only memory map of one `.npy` column, checked against the expected dtype, length
    and the exact file size (a truncated or padded file is an error naming it)."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else \
                fmt.read_array_header_2_0
            shape, fortran, found = read_header(f)
            offset = f.tell()
    except (OSError, ValueError) as exc:
        raise SpeechfmError(f"unreadable index column: {exc}", path=path, hint=HINT) from None
    if found != np.dtype(dtype) or shape != (length,) or fortran:
        raise SpeechfmError(f"index column holds {found}{list(shape)}, expected "
                            f"{np.dtype(dtype)}[{length}]", path=path, hint=HINT)
    _check_size(path, offset + length * np.dtype(dtype).itemsize)
    return _map(path, dtype, offset, length)


def _map(path: Path, dtype: type, offset: int, length: int) -> np.ndarray:
    if length == 0:  # an empty file cannot be mapped
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(length,)).view(np.ndarray)


class SegmentIndex:
    """The opened index of one manifest: columns as shared read-only memory maps."""

    def __init__(self, manifest: Path):
        self.manifest = Path(manifest)
        self.folder = index_dir(self.manifest)
        meta_path = self.folder / META
        if not meta_path.is_file():
            raise StaleIndexError("no segment index beside the manifest", path=self.folder,
                                  hint=HINT)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            rows, runs, paths = int(meta["rows"]), int(meta["runs"]), int(meta["paths"])
            body = int(meta["body_bytes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SpeechfmError(f"unreadable index description: {exc}", path=meta_path,
                                hint=HINT) from None
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise SpeechfmError(f"not a {FORMAT} version {VERSION}", path=meta_path, hint=HINT)
        try:
            current = _body_bytes(self.manifest)
        except OSError as exc:
            raise SpeechfmError(f"cannot read the manifest: {exc}", path=self.manifest) from None
        if current != body:
            raise StaleIndexError(f"the index was built from another version of {meta['manifest']}"
                                  f" ({body} bytes of entries, now {current})", path=self.folder,
                                  hint=HINT)
        with open(self.manifest, encoding="utf-8") as f:
            self.root = f.readline().strip()
        lengths = {"offset": rows, "size": rows, "frames": rows, "run_start": runs,
                   "run_path": runs, "path_offsets": paths + 1}
        cols = {name: _column(self.folder / f"{name}.npy", dtype, lengths[name])
                for name, dtype in COLUMNS.items()}
        self.rows = rows
        self.offsets, self.sizes, self.frames = cols["offset"], cols["size"], cols["frames"]
        self.run_start, self.run_path = cols["run_start"], cols["run_path"]
        self.path_offsets = cols["path_offsets"]
        blob = self.folder / PATHS
        try:
            _check_size(blob, int(self.path_offsets[-1]))
        except OSError as exc:
            raise SpeechfmError(f"unreadable index file: {exc}", path=blob, hint=HINT) from None
        self._blob = _map(blob, np.uint8, 0, int(self.path_offsets[-1]))

    def path(self, path_id: int) -> str:
        """The manifest path (relative to the root) of a path id."""
        a, b = int(self.path_offsets[path_id]), int(self.path_offsets[path_id + 1])
        return self._blob[a:b].tobytes().decode("utf-8")

    def path_id(self, row: int) -> int:
        return int(self.run_path[int(np.searchsorted(self.run_start, row, side="right")) - 1])

    def entry(self, row: int) -> tuple[str, int, int]:
        """(path, offset, size) of a row; size is `WHOLE_FILE` for a plain audio file."""
        return self.path(self.path_id(row)), int(self.offsets[row]), int(self.sizes[row])


def open_index(manifest: Path, build_missing: bool = False) -> SegmentIndex:
    """The index of `manifest`; with `build_missing`, a missing or stale one is (re)built first."""
    try:
        return SegmentIndex(manifest)
    except StaleIndexError as exc:
        if not build_missing:
            raise
        log.info("building the segment index of %s (%s)", manifest, exc)
        build_index(manifest)
        return SegmentIndex(manifest)
