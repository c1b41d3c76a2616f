"""Decode any file ffmpeg reads to 16 kHz mono s16 on a pipe (no intermediate file)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechfm.constants import SAMPLE_RATE
from speechfm.errors import require_tool

PIPE_BYTES = 1 << 20
"""Pipe buffer asked for (Linux's default limit for an unprivileged process is 1 MiB)."""

PIPE_WAIT = 0.01
"""Seconds to let ffmpeg fill the pipe after a short read. ffmpeg writes each decoded frame as it
comes (median 744 bytes on the demo's MPEG-TS): a reader that wakes for each write makes ~25,000
reads per 10-minute file, which cost 1.5-1.7 s of CPU per 1.33 audio hours on the 2-core VM (15-20%
of the decode itself). Waiting after a short read makes 60-230 reads a file for 0.15-0.3 s, and
does not slow the decode: ffmpeg keeps writing into the 1 MiB pipe meanwhile."""


def read_pipe(fd: int) -> bytes:
    """Everything until EOF from the pipe `fd`, in few large reads (see PIPE_WAIT)."""
    size = 0
    if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux
        try:
            size = fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:  # not a pipe, or the limit is lower here: read as it comes
            pass
    chunks = []
    while block := os.read(fd, max(size, 1 << 16)):
        chunks.append(block)
        if size and len(block) < size // 2:
            time.sleep(PIPE_WAIT)
    return b"".join(chunks)


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
                                stderr=errfile, stdin=subprocess.DEVNULL, bufsize=0)
        assert proc.stdout is not None
        with proc.stdout:
            raw = read_pipe(proc.stdout.fileno())
        rc = proc.wait()
        errfile.seek(0)
        err = errfile.read()[-4000:].decode("utf-8", "replace")
    raw = raw[: len(raw) // 2 * 2]
    return Decoded(np.frombuffer(raw, dtype="<i2"), summarize_errors(err), rc)


def summarize_errors(stderr: str) -> str:
    """ffmpeg's distinct error lines, advice lines left out, joined into one reason."""
    lines = [ln.strip() for ln in stderr.splitlines()
             if ln.strip() and not ln.strip().startswith("To ignore this")]
    return "; ".join(dict.fromkeys(lines[-3:]))
