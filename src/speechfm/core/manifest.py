"""fairseq manifests: the root folder on the first line, then one `path<TAB>frames` line per
utterance, where `path` is a file below the root or, for tar shards, `shard.tar:offset:size` (the
member's data bytes, which fairseq's `FileAudioDataset` reads by offset). `prepare` writes them,
pre-training, fine-tuning, `verify` and `lur` read them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from speechfm.core.errors import SpeechfmError

MANIFESTS_DIR = "manifests"


def check_root(out: Path) -> Path:
    """The absolute output root; fairseq splits manifest paths on ':', so it must not hold one."""
    root = out.resolve()
    if ":" in str(root):
        raise SpeechfmError("the output path contains ':', which fairseq's manifests cannot hold",
                            path=root, hint="choose an output folder without ':'")
    return root


def write_manifest(path: Path, root: Path, lines: Iterable[str]) -> None:
    """Write a manifest atomically (`.part`, then renamed): the root, then `lines`."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{root}\n")
        for line in lines:
            f.write(line)
            f.write("\n")
    os.replace(tmp, path)


def parse_entry(spec: str) -> tuple[str, int, int]:
    """(path, offset, size) of a manifest path: `shard.tar:offset:size`, or (file, 0, 0)."""
    parts = spec.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return parts[0], int(parts[1]), int(parts[2])
    return spec, 0, 0


def read_manifest(path: Path) -> tuple[Path, list[tuple[str, int, int, int]]]:
    """(root, [(path, offset, size, frames)]) of a fairseq manifest, parsed as fairseq does;
    plain files have offset and size 0."""
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed below, errors named
    except OSError as exc:
        raise SpeechfmError(f"cannot read manifest: {exc.strerror}", path=path) from None
    with f:
        root = Path(f.readline().strip())
        rows = []
        for n, line in enumerate(f, start=2):
            if not line.strip():
                continue
            try:
                spec, frames = line.rstrip("\n").split("\t")
                rows.append((*parse_entry(spec), int(frames)))
            except ValueError:
                raise SpeechfmError(f"line {n} is not 'path<TAB>frames'", path=path) from None
    return root, rows
