"""The one data model every stage shares: a speech segment stored as a FLAC member of a tar shard.

`prepare` writes segments, the manifests list them, `verify` and fairseq read them back by byte
offset, the statistics count them. A shard index is a JSON-lines file with one `Segment` a line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from speechfm.core.constants import SAMPLE_RATE


@dataclass(frozen=True)
class Segment:
    """One segment: where its bytes are, how long it is, and where it came from."""

    shard: str  # shard path relative to the data root, e.g. "shards/yle_tv1/2021-01.tar"
    member: str  # tar member name (unique inside the shard)
    offset: int  # byte offset of the member's data inside the tar
    size: int  # bytes of FLAC data
    frames: int  # samples at SAMPLE_RATE
    source: str  # source file, relative to the archive root
    start: float  # seconds into the source
    end: float
    sha256: str  # of the member's bytes
    channel: str = ""

    @property
    def seconds(self) -> float:
        return self.frames / SAMPLE_RATE

    @property
    def manifest_path(self) -> str:
        """fairseq's `FileAudioDataset` path form: `shard.tar:offset:size`."""
        return f"{self.shard}:{self.offset}:{self.size}"

    def manifest_line(self) -> str:
        return f"{self.shard}:{self.offset}:{self.size}\t{self.frames}"  # = manifest_path, inlined: 1M rows

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Segment:
        data = json.loads(line)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def read_index(path: Path) -> Iterator[Segment]:
    """Segments of one shard index (JSON lines)."""
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield Segment.from_json(line)


def write_index(path: Path, segments: Iterable[Segment]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for seg in segments:
            f.write(seg.to_json() + "\n")
