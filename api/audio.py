"""Decoding uploads and splitting long audio into <= 30 s speech chunks.

Uploads that are already what the models read (16 kHz mono 16-bit WAV or FLAC) are read in-process
with libsndfile: the same samples ffmpeg would give, without starting a process (ffmpeg's start
alone costs ~140 ms CPU on a small VM, a third of a Base model's forward). Everything else goes
through ffmpeg in a subprocess, restricted to a list of demuxers and to the local file."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import numpy as np

from speechfm.core.audio import ffmpeg_pcm_command
from speechfm.core.constants import MAX_SEGMENT_SECONDS, SAMPLE_RATE
from speechfm.core.vad import VadConfig
from speechfm_api.errors import ApiError, LimitExceeded

log = logging.getLogger(__name__)

VAD = VadConfig()
"""The service cuts long audio as `speechfm prepare` does by default: silero, which rejects music
and noise (webrtcvad keeps nearly all of both, and the model then spells letters over music)."""
MERGE_GAP_S = 1.0
"""Neighbouring speech regions closer than this share a chunk (up to 30 s); farther apart, the
stretch between them (music, noise, silence) is never decoded."""


NATIVE_FORMATS = ("WAV", "FLAC")


def decode(path: Path, max_seconds: float, limit: str = "max_audio_seconds") -> np.ndarray:
    """Decode any audio ffmpeg reads to 16 kHz mono float32; 422 if it is not audio, 413 if longer
    than `max_seconds` (decoding stops just past the limit, so long files cost little)."""
    if path.stat().st_size == 0:
        raise ApiError(422, "empty_upload", "the uploaded file is empty")
    pcm = read_native(path, max_seconds)
    if pcm is None:
        pcm = decode_with_ffmpeg(path, max_seconds)
    if pcm.size > max_seconds * SAMPLE_RATE:
        raise LimitExceeded(limit, max_seconds,
                            f"audio longer than the limit of {max_seconds:g} s")
    return pcm.astype(np.float32) / 32768.0


def read_native(path: Path, max_seconds: float) -> np.ndarray | None:
    """The int16 samples of a 16 kHz mono 16-bit WAV/FLAC (at most just past `max_seconds`), read
    in-process; None for any other file, or one libsndfile cannot read whole (ffmpeg then decides)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        if (info.format not in NATIVE_FORMATS
                or (info.subtype, info.samplerate, info.channels) != ("PCM_16", SAMPLE_RATE, 1)):
            return None
        pcm, _ = sf.read(str(path), frames=int(max_seconds * SAMPLE_RATE) + 1, dtype="int16",
                         always_2d=False)
    except (RuntimeError, sf.LibsndfileError, ValueError, TypeError):
        return None
    return pcm if pcm.size else None


def decode_with_ffmpeg(path: Path, max_seconds: float) -> np.ndarray:
    """The int16 samples ffmpeg decodes (16 kHz mono), at most just past `max_seconds`; 422 when it
    cannot."""
    cmd = ffmpeg_pcm_command(path, untrusted=True, max_seconds=max_seconds)
    proc = subprocess.run(cmd, capture_output=True, timeout=300, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").replace(str(path), "upload")
        reason = reason.strip().splitlines()
        raise ApiError(422, "not_audio", "the upload could not be decoded as audio",
                       detail=(reason[-1] if reason else f"ffmpeg exit {proc.returncode}")[:300])
    pcm = np.frombuffer(proc.stdout[: len(proc.stdout) // 2 * 2], dtype="<i2")
    if pcm.size == 0:
        raise ApiError(422, "no_audio", "the upload holds no decodable audio samples")
    return pcm


def split_speech(audio: np.ndarray, max_seconds: float = MAX_SEGMENT_SECONDS,
                 ) -> list[tuple[float, float]]:
    """Speech chunks (start, end) in seconds, each <= `max_seconds`, by the shared VAD of
    `speechfm prepare` (its frame decisions and smoothing, in the mode of `VAD`).

    Audio no longer than `max_seconds` is one chunk (nothing dropped). Longer audio: speech
    regions less than `MERGE_GAP_S` apart are merged while the chunk stays within the limit,
    regions longer than the limit are cut evenly, and no piece is dropped for being short (unlike
    training segments); what lies between chunks (music, noise, silence) is not transcribed.
    """
    from speechfm.core.vad import frame_decisions, speech_regions

    duration = audio.size / SAMPLE_RATE
    if duration <= max_seconds:
        return [(0.0, duration)]
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    flags, step = frame_decisions(pcm, VAD)
    chunks: list[tuple[float, float]] = []
    for a, b in speech_regions(flags, step, pcm.size, VAD):
        start, end = a / SAMPLE_RATE, b / SAMPLE_RATE
        if chunks and start - chunks[-1][1] < MERGE_GAP_S and end - chunks[-1][0] <= max_seconds:
            chunks[-1] = (chunks[-1][0], end)
            continue
        pieces = int(np.ceil((end - start) / max_seconds))
        step_s = (end - start) / pieces
        chunks.extend((start + i * step_s, start + (i + 1) * step_s) for i in range(pieces))
    return [(round(s, 3), round(e, 3)) for s, e in chunks]
