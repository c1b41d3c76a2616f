"""Decode any file ffmpeg reads to 16 kHz mono s16 on a pipe (no intermediate file)."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechfm.constants import SAMPLE_RATE
from speechfm.errors import require_tool


@dataclass
class Decoded:
    """Decoded samples of one file, and what ffmpeg complained about (empty when clean)."""

    samples: np.ndarray  # int16, mono, SAMPLE_RATE
    error: str  # "" when ffmpeg decoded without errors
    returncode: int


def ffmpeg_pcm_command(path: Path) -> list[str]:
    """The ffmpeg command that writes the first audio stream as 16 kHz mono s16le to stdout."""
    return [require_tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error",
            "-i", str(path), "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1",
            "-ar", str(SAMPLE_RATE), "-f", "s16le", "-threads", "1", "pipe:1"]


def decode(path: Path) -> Decoded:
    """Stream-decode `path` through ffmpeg's stdout; errors are returned, not raised."""
    with tempfile.TemporaryFile() as errfile:  # anonymous: a chatty ffmpeg cannot block on it
        proc = subprocess.Popen(ffmpeg_pcm_command(path), stdout=subprocess.PIPE,
                                stderr=errfile, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        chunks = []
        while block := proc.stdout.read(1 << 20):
            chunks.append(block)
        rc = proc.wait()
        errfile.seek(0)
        err = errfile.read()[-4000:].decode("utf-8", "replace")
    raw = b"".join(chunks)
    raw = raw[: len(raw) // 2 * 2]
    return Decoded(np.frombuffer(raw, dtype="<i2"), summarize_errors(err), rc)


def summarize_errors(stderr: str) -> str:
    """ffmpeg's distinct error lines, advice lines left out, joined into one reason."""
    lines = [ln.strip() for ln in stderr.splitlines()
             if ln.strip() and not ln.strip().startswith("To ignore this")]
    return "; ".join(dict.fromkeys(lines[-3:]))
