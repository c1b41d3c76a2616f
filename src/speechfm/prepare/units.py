"""Process one unit: decode each file, keep speech, append FLAC segments to the unit's tar shard(s)
under temporary names, then publish shards, indexes and a done-marker atomically.

On disk, for unit `2021-01` of channel `yle_tv1` (relative to the output root):
`shards/yle_tv1/2021-01.tar` (+ `_1.tar`, `_2.tar` when over the size cap), each with
`<shard>.index.jsonl` and (unless fingerprints are off) `<shard>.fp.npz`, the segments'
fingerprints for `dedup`, and `shards/yle_tv1/2021-01.done.json` written last. A unit without its
done-marker is incomplete: everything of it is deleted and rebuilt. A builder holds the unit's
lock (`2021-01.lock`) from its first deletion to its marker, so two builders of one unit (a re-run
while old Slurm array tasks still run) take turns; the second finds the unit done.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechfm.core.audio import decode
from speechfm.core.constants import DONE_SUFFIX, INDEX_SUFFIX, SAMPLE_RATE, SHARD_SUFFIX, SHARDS_DIR
from speechfm.core.fingerprint import FINGERPRINT_SUFFIX, Fingerprint, fingerprint, write_sidecar
from speechfm.core.segment import Segment, write_index
from speechfm.prepare.config import PrepareConfig
from speechfm.prepare.discover import Unit

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
PART = ".part"
TS_PACKET = 188  # bytes per MPEG-TS packet: a .ts of another size was cut short


def unit_dir(out: Path, unit: Unit) -> Path:
    return out / SHARDS_DIR / unit.channel


def done_path(out: Path, unit: Unit) -> Path:
    return unit_dir(out, unit) / f"{unit.name}{DONE_SUFFIX}"


def read_done(out: Path, unit: Unit) -> dict[str, Any] | None:
    """The unit's completion record, or None when the unit is not (or not wholly) written."""
    path = done_path(out, unit)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# --- per-unit lock (issue 14: two builders, one unit) ------------------------------------------
NO_LOCKS = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP)
"""What a file system without (coherent) POSIX locks answers, e.g. Lustre mounted `noflock`."""


@contextlib.contextmanager
def unit_lock(out: Path, unit: Unit) -> Iterator[None]:
    """Hold the unit's POSIX record lock (`fcntl.lockf` on `<unit>.lock`) while building it.

    POSIX locks are the kind that NFS (lockd / v4) and Lustre (mounted with `flock`) keep
    coherent across nodes, and the kernel or the lock manager drops them when the holder dies, so
    a killed builder leaves no stale lock. The lock file stays (empty): deleting it would race."""
    path = unit_dir(out, unit) / f"{unit.name}{LOCK_SUFFIX}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in NO_LOCKS:
                log.warning("%s: this file system refuses locks (%s); two builders of unit %s "
                            "at once could corrupt it", path, exc.strerror, unit.key)
            elif exc.errno in (errno.EACCES, errno.EAGAIN):
                log.info("unit %s is being built by another process; waiting for %s",
                         unit.key, path)
                fcntl.lockf(fd, fcntl.LOCK_EX)
            else:
                raise
        yield
    finally:
        os.close(fd)  # releases the lock


def is_done(record: dict[str, Any] | None, unit: Unit, config: PrepareConfig) -> bool:
    """Whether a completion record is this unit's, built from the same files and settings."""
    return (record is not None and record["files"] == list(unit.files)
            and config.recorded_settings(record["config"]) == config.unit_settings())


def remove_unit(out: Path, unit: Unit) -> None:
    """Delete every file of an incomplete unit (partial shards, indexes, a stale marker)."""
    folder = unit_dir(out, unit)
    if not folder.is_dir():
        return
    pattern = re.compile(rf"^{re.escape(unit.name)}(_\d+)?"
                         rf"({re.escape(SHARD_SUFFIX)}|{re.escape(INDEX_SUFFIX)}|"
                         rf"{re.escape(SHARD_SUFFIX + INDEX_SUFFIX)}|{re.escape(DONE_SUFFIX)}|"
                         rf"{re.escape(SHARD_SUFFIX + FINGERPRINT_SUFFIX)})"
                         rf"({re.escape(PART)})?$")
    for path in folder.iterdir():
        if pattern.match(path.name):
            path.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flac_bytes(samples) -> bytes:
    """Encode int16 mono samples as FLAC in memory."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


@dataclass
class _ShardWriter:
    """Appends members to `<name>.tar.part` files, opening the next shard past the size cap."""

    folder: Path
    name: str
    channel: str
    max_bytes: int
    shards: list[tuple[str, list[Segment]]] = field(default_factory=list)
    prints: list[list[Fingerprint]] = field(default_factory=list)  # per shard, when fingerprinting
    _file: Any = None
    _tar: tarfile.TarFile | None = None

    def _shard_name(self) -> str:
        n = len(self.shards)
        return f"{self.name}{'' if n == 0 else f'_{n}'}{SHARD_SUFFIX}"

    def _open(self) -> None:
        self._close()
        shard = self._shard_name()
        # kept open across add() calls and closed in _close(): a context manager cannot span them
        self._file = open(self.folder / (shard + PART), "wb")  # noqa: SIM115
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.shards.append((shard, []))
        self.prints.append([])

    def _close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._tar = None

    def add(self, member: str, data: bytes, fp: Fingerprint | None = None, **meta: Any) -> None:
        if self._tar is None or (self._file.tell() + len(data) > self.max_bytes
                                 and self.shards[-1][1]):
            self._open()
        info = tarfile.TarInfo(member)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        self._tar.addfile(info, io.BytesIO(data))
        # addfile works on a copy of `info`; the data ends the tar so far, padded to a block
        offset = self._tar.offset - -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        shard, segments = self.shards[-1]
        rel = f"{SHARDS_DIR}/{self.channel}/{shard}"
        segments.append(Segment(shard=rel, member=member, offset=offset, size=len(data),
                                sha256=hashlib.sha256(data).hexdigest(), channel=self.channel,
                                **meta))
        if fp is not None:
            self.prints[-1].append(fp)

    def publish(self) -> list[str]:
        """Write indexes (and fingerprint sidecars), then rename them and the shards into place;
        returns the shard names."""
        self._close()
        for (shard, segments), prints in zip(self.shards, self.prints):
            index_part = self.folder / (shard + INDEX_SUFFIX + PART)
            write_index(index_part, segments)
            with open(index_part, "rb+") as f:
                os.fsync(f.fileno())
            if prints:
                write_sidecar(self.folder / (shard + FINGERPRINT_SUFFIX + PART), prints)
        for (shard, _), prints in zip(self.shards, self.prints):
            os.replace(self.folder / (shard + INDEX_SUFFIX + PART),
                       self.folder / (shard + INDEX_SUFFIX))
            if prints:
                os.replace(self.folder / (shard + FINGERPRINT_SUFFIX + PART),
                           self.folder / (shard + FINGERPRINT_SUFFIX))
            os.replace(self.folder / (shard + PART), self.folder / shard)
        return [shard for shard, _ in self.shards]


def member_name(source: str, start: int, end: int) -> str:
    """Tar member name of a segment: source path without channel and suffix, then its span in ms."""
    stem = Path(source).with_suffix("").as_posix().split("/", 1)[-1]
    return f"{stem}/{start * 1000 // SAMPLE_RATE:09d}-{end * 1000 // SAMPLE_RATE:09d}.flac"


def process_unit(archive: Path, out: Path, unit: Unit, config: PrepareConfig) -> dict[str, Any]:
    """Build one unit from scratch and publish it, under its lock; returns its completion record
    (the one found, when another builder completed the same unit meanwhile)."""
    folder = unit_dir(out, unit)
    folder.mkdir(parents=True, exist_ok=True)
    with unit_lock(out, unit):
        done = read_done(out, unit)
        if is_done(done, unit, config):
            log.info("unit %s was completed by another builder; kept", unit.key)
            return done
        return _build_unit(archive, out, unit, config)


def _build_unit(archive: Path, out: Path, unit: Unit, config: PrepareConfig) -> dict[str, Any]:
    """Build one unit (its lock held). A builder uses one core (prepare runs one per core, or one
    per Slurm task): with the silero VAD it sets torch's intra-op threads to 1 in this process."""
    from speechfm.core.vad import segments_of

    if config.vad == "silero":
        import torch

        torch.set_num_threads(1)

    folder = unit_dir(out, unit)
    remove_unit(out, unit)
    writer = _ShardWriter(folder, unit.name, unit.channel, config.shard_max_bytes)
    files, rejects = [], []
    for source in unit.files:
        path = archive / source
        try:
            decoded = decode(path)
        except OSError as exc:
            rejects.append({"source": source, "reason": str(exc), "action": "skipped"})
            continue
        samples = decoded.samples
        if decoded.returncode != 0 or len(samples) == 0:
            reason = decoded.error or f"ffmpeg exited with {decoded.returncode}"
            if decoded.returncode == 0:
                reason = f"no audio decoded{': ' + decoded.error if decoded.error else ''}"
            rejects.append({"source": source, "reason": reason, "action": "skipped"})
            log.warning("%s: rejected: %s", source, reason)
            continue
        if not decoded.error and path.suffix.lower() == ".ts" and path.stat().st_size % TS_PACKET:
            decoded.error = f"truncated: the last {TS_PACKET}-byte transport packet is incomplete"
        if decoded.error:
            rejects.append({"source": source, "reason": decoded.error, "action": "kept-decoded-part"})
            log.warning("%s: decoded with errors, kept what decoded: %s", source, decoded.error)
        pieces, dropped = segments_of(samples, config.vad_config)
        kept = 0
        for a, b in pieces:
            fp = fingerprint(samples[a:b]) if config.fingerprint else None  # for `dedup`
            writer.add(member_name(source, a, b), flac_bytes(samples[a:b]), fp, frames=b - a,
                       source=source, start=round(a / SAMPLE_RATE, 4), end=round(b / SAMPLE_RATE, 4))
            kept += b - a
        files.append({"source": source, "seconds": round(len(samples) / SAMPLE_RATE, 4),
                      "kept": round(kept / SAMPLE_RATE, 4),
                      "dropped_short": round(dropped / SAMPLE_RATE, 4), "segments": len(pieces)})
    shards = writer.publish()
    record = {"channel": unit.channel, "unit": unit.name, "files": list(unit.files),
              "config": config.unit_settings(), "shards": shards, "stats": files, "rejects": rejects}
    marker = done_path(out, unit)
    tmp = marker.with_name(marker.name + PART)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker)
    _fsync_dir(folder)
    return record
