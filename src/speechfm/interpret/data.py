"""The test utterances of an LUR analysis: a labeled TSV, a folder of audio files or a fairseq
manifest (plain files or the project's `shard.tar:offset:size` entries). Transcripts are not used:
the analysis explains the model's own greedy predictions."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechfm.constants import SAMPLE_RATE
from speechfm.errors import SpeechfmError

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3")
LABELED_HEADER = ("path", "seconds", "voice", "text")


@dataclass(frozen=True)
class Utterance:
    """One audio input: a file, or a byte range inside a file (a tar shard member)."""

    path: Path
    offset: int = 0
    size: int = 0  # 0: the whole file

    @property
    def name(self) -> str:
        return f"{self.path}:{self.offset}:{self.size}" if self.size else str(self.path)


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
    lines = data.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise SpeechfmError("empty data file", path=data)
    if tuple(lines[0].split("\t")[:2]) == LABELED_HEADER[:2]:
        from speechfm.synth.labeled import read_split

        return [Utterance(Path(row["path"])) for row in read_split(data)]
    return _read_manifest(data, lines)


def _read_manifest(data: Path, lines: list[str]) -> list[Utterance]:
    """fairseq manifest: the root folder on the first line, then `path<TAB>frames` lines."""
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = data.parent / root
    utterances = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = next(csv.reader([line], delimiter="\t"))
        if len(fields) < 2 or not fields[1].isdigit():
            raise SpeechfmError(f"line {number} is not 'path<TAB>frames'", path=data,
                                hint="expected a labeled TSV (path, seconds, voice, text), a "
                                     "fairseq manifest or a folder of audio files")
        parts = fields[0].rsplit(":", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            utterances.append(Utterance(root / parts[0], int(parts[1]), int(parts[2])))
        else:
            utterances.append(Utterance(root / fields[0]))
    if not utterances:
        raise SpeechfmError("the manifest lists no audio", path=data)
    return utterances


def load_audio(utt: Utterance) -> np.ndarray:
    """Mono float32 samples at SAMPLE_RATE (other rates are resampled)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        if utt.size:
            with utt.path.open("rb") as f:
                f.seek(utt.offset)
                raw = f.read(utt.size)
            audio, rate = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
        else:
            audio, rate = sf.read(utt.path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise SpeechfmError(f"cannot read audio: {exc}", path=utt.name) from exc
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = np.gcd(rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)
    if audio.size < SAMPLE_RATE // 10:
        raise SpeechfmError(f"audio too short ({audio.size} samples)", path=utt.name)
    return audio
