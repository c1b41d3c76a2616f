"""Audio I/O every stage shares: decoding any file ffmpeg reads to 16 kHz mono s16 on a pipe (no
intermediate file), and reading clips (whole files or tar-shard members) as float32 samples."""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.errors import require_tool

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


UNTRUSTED_DEMUXERS = (
    "wav,w64,flac,mp3,ogg,matroska,webm,mov,aac,mpegts,aiff,au,caf,amr,wv,ape,asf,"
    "flv,avi,mpeg,opus,ac3,eac3,dts,tta,voc,gsm,mp2"
)
"""Containers ffmpeg may open from an untrusted file (an upload). Playlists (hls, concat) are
excluded: they could make ffmpeg read other files or URLs."""


def ffmpeg_pcm_command(path: Path, untrusted: bool = False,
                       max_seconds: float | None = None) -> list[str]:
    """The ffmpeg command that writes the first audio stream as 16 kHz mono s16le to stdout.
    `untrusted`: only local files and the demuxers above; `max_seconds`: stop just past it."""
    cmd = [require_tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error"]
    if untrusted:
        cmd += ["-protocol_whitelist", "file", "-format_whitelist", UNTRUSTED_DEMUXERS]
    cmd += ["-i", str(path)]
    if max_seconds is not None:
        cmd += ["-t", f"{max_seconds + 0.5:.3f}"]
    return cmd + ["-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(SAMPLE_RATE),
                  "-f", "s16le", "-threads", "1", "pipe:1"]


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


def read_clip(path: Path, offset: int = 0, size: int = 0) -> np.ndarray:
    """Mono float32 samples at SAMPLE_RATE of an audio file, or of the `size` bytes at `offset`
    inside it (a tar-shard member); other rates are resampled."""
    import io

    import soundfile as sf
    from scipy.signal import resample_poly

    from speechfm.core.errors import SpeechfmError

    where = f"{path}:{offset}:{size}" if size else path
    try:
        if size:
            with open(path, "rb") as f:
                f.seek(offset)
                raw = f.read(size)
            audio, rate = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
        else:
            audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise SpeechfmError(f"cannot read audio: {exc}", path=where) from exc
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if rate != SAMPLE_RATE:
        g = np.gcd(rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return np.ascontiguousarray(audio, dtype=np.float32)
