"""The test utterances of an LUR analysis: a labeled table (any form `speechfm.core.labeled`
reads), a fairseq manifest (plain files or the project's `shard.tar:offset:size` entries) or a
folder of audio files. Transcripts are not used: the analysis explains the model's own greedy
predictions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechfm.core.audio import read_clip
from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.errors import SpeechfmError
from speechfm.core.labeled import AUDIO_SUFFIXES, read_table
from speechfm.core.manifest import read_manifest


@dataclass(frozen=True)
class Utterance:
    """One audio input: a file, or a byte range inside a file (a tar shard member)."""

    path: Path
    offset: int = 0
    size: int = 0  # 0: the whole file

    @property
    def name(self) -> str:
        return f"{self.path}:{self.offset}:{self.size}" if self.size else str(self.path)


def is_manifest(data: Path) -> bool:
    """A fairseq manifest starts with a root folder alone on its line; a labeled table (TSV) has
    its columns on every line, a CSV is always a table."""
    if data.suffix.lower() == ".csv":
        return False
    with data.open(encoding="utf-8") as f:
        return "\t" not in f.readline()


def list_utterances(data: Path) -> list[Utterance]:
    """The utterances of `data`, in a fixed order (resuming relies on it)."""
    if not data.exists():
        raise SpeechfmError("test data not found", path=data)
    if data.is_dir():
        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise SpeechfmError("no audio files in the folder", path=data,
                                hint=f"expected {', '.join(AUDIO_SUFFIXES)}")
        return [Utterance(p) for p in files]
    if data.stat().st_size == 0:
        raise SpeechfmError("empty data file", path=data)
    if not is_manifest(data):
        return [Utterance(path) for path, _ in read_table(data)]
    root, rows = read_manifest(data)
    root = root if root.is_absolute() else data.parent / root
    if not rows:
        raise SpeechfmError("the manifest lists no audio", path=data)
    return [Utterance(root / path, offset, size) for path, offset, size, _ in rows]


def load_audio(utt: Utterance) -> np.ndarray:
    """Mono float32 samples at SAMPLE_RATE (other rates are resampled)."""
    audio = read_clip(utt.path, utt.offset, utt.size)
    if audio.size < SAMPLE_RATE // 10:
        raise SpeechfmError(f"audio too short ({audio.size} samples)", path=utt.name)
    return audio
