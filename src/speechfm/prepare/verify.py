"""Read every manifest entry exactly as fairseq does (byte offset and length into the tar) and check
that the FLAC decodes to the listed frame count with the indexed checksum; check every shard for
duplicate or partial members."""

from __future__ import annotations

import hashlib
import io
import tarfile
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import soundfile as sf
from tqdm import tqdm

from speechfm.core.constants import INDEX_SUFFIX
from speechfm.core.errors import SpeechfmError
from speechfm.core.manifest import MANIFESTS_DIR, read_manifest
from speechfm.core.segment import Segment, read_index
from speechfm.core.segment_index import WHOLE_FILE, SegmentIndex, index_dir


def check_shard(path: Path) -> list[str]:
    """Problems of one tar shard: unreadable or truncated, duplicate member names."""
    problems, seen = [], set()
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if info.name in seen:
                    problems.append(f"{path}: duplicate member {info.name}")
                seen.add(info.name)
                if info.offset_data + info.size > path.stat().st_size:
                    problems.append(f"{path}: member {info.name} is cut short")
    except (tarfile.TarError, OSError) as exc:
        problems.append(f"{path}: unreadable tar: {exc}")
    return problems


def verify(out: Path) -> tuple[int, list[str]]:
    """(entries checked, problems) for every manifest under OUT/manifests and every shard."""
    root = out
    index: dict[tuple[str, int, int], Segment] = {}
    problems: list[str] = []
    for idx in sorted((out / "shards").rglob(f"*{INDEX_SUFFIX}")):
        for seg in read_index(idx):
            index[(seg.shard, seg.offset, seg.size)] = seg
    for shard in sorted((out / "shards").rglob("*.tar")):
        problems += check_shard(shard)
    manifest_files = sorted((out / MANIFESTS_DIR).glob("*.tsv"))
    if not manifest_files:
        problems.append(f"{out / MANIFESTS_DIR}: no manifests")
    handles: dict[str, BinaryIO] = {}
    checked = 0
    with ExitStack() as stack:
        for manifest in manifest_files:
            checked += _check_manifest(manifest, root, index, handles, stack, problems)
    return checked, problems


def _check_index(manifest: Path, rows: list[tuple[str, int, int, int]],
                 problems: list[str]) -> None:
    """The manifest's segment index, where there is one, must list the same entries."""
    if not index_dir(manifest).exists():
        return
    try:
        index = SegmentIndex(manifest)
    except SpeechfmError as exc:
        problems.append(str(exc))
        return
    if index.rows != len(rows):
        problems.append(f"{index.folder}: {index.rows} rows, the manifest has {len(rows)}")
        return
    for n, (shard, offset, size, frames) in enumerate(rows):
        path, at, length = index.entry(n)
        entry = (path, 0, 0) if length == WHOLE_FILE else (path, at, length)  # a plain file
        if entry != (shard, offset, size) or int(index.frames[n]) != frames:
            problems.append(f"{index.folder}: row {n} is {entry}, {index.frames[n]} frames; "
                            f"{manifest.name}:{n + 2} says {shard}:{offset}:{size}, {frames}")
            return


def _check_manifest(manifest: Path, root: Path, index: dict[tuple[str, int, int], Segment],
                    handles: dict[str, BinaryIO], stack: ExitStack, problems: list[str]) -> int:
    """Check every entry of one manifest; returns the number of entries."""
    mroot, rows = read_manifest(manifest)
    if mroot.resolve() != root.resolve():
        problems.append(f"{manifest}: root {mroot} is not {root.resolve()}")
    _check_index(manifest, rows, problems)
    for n, (shard, offset, size, frames) in enumerate(
            tqdm(rows, desc=manifest.name, unit="entry", disable=None), start=2):
        where = f"{manifest}:{n} ({shard}:{offset}:{size})"
        try:
            if shard not in handles:
                handles[shard] = stack.enter_context(open(mroot / shard, "rb"))  # noqa: SIM115
            f = handles[shard]
            f.seek(offset)
            data = f.read(size)
        except OSError as exc:
            problems.append(f"{where}: cannot read: {exc}")
            continue
        if len(data) != size:
            problems.append(f"{where}: shard ends after {len(data)} of {size} bytes")
            continue
        seg = index.get((shard, offset, size))
        if seg is None:
            problems.append(f"{where}: not in the shard index")
        elif hashlib.sha256(data).hexdigest() != seg.sha256:
            problems.append(f"{where}: checksum mismatch ({seg.member})")
        try:
            decoded = sf.info(io.BytesIO(data)).frames
            audio, _ = sf.read(io.BytesIO(data), dtype="int16")
            if decoded != frames or len(audio) != frames:
                problems.append(f"{where}: {len(audio)} frames decoded, manifest says {frames}")
        except (sf.LibsndfileError, RuntimeError) as exc:
            problems.append(f"{where}: FLAC does not decode: {exc}")
    return len(rows)
