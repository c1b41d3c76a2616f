"""Decoding uploads with ffmpeg and splitting long audio into <= 30 s speech chunks."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import numpy as np

from api.errors import ApiError, LimitExceeded
from speechfm.constants import MAX_SEGMENT_SECONDS, SAMPLE_RATE
from speechfm.errors import require_tool

log = logging.getLogger(__name__)

DEMUXERS = (
    "wav,w64,flac,mp3,ogg,matroska,webm,mov,aac,mpegts,aiff,au,caf,amr,wv,ape,asf,"
    "flv,avi,mpeg,opus,ac3,eac3,dts,tta,voc,gsm,mp2"
)
"""Containers ffmpeg may open from an upload. Playlists (hls, concat) are excluded: they could
make ffmpeg read other files or URLs."""

VAD_FRAME_MS = 30
VAD_AGGRESSIVENESS = 2
VAD_MIN_GAP_S = 0.3
VAD_MIN_SPEECH_S = 0.2
VAD_PAD_S = 0.1


def decode(path: Path, max_seconds: float, limit: str = "max_audio_seconds") -> np.ndarray:
    """Decode any audio ffmpeg reads to 16 kHz mono float32; 422 if it is not audio, 413 if longer
    than `max_seconds` (decoding stops just past the limit, so long files cost little)."""
    if path.stat().st_size == 0:
        raise ApiError(422, "empty_upload", "the uploaded file is empty")
    cmd = [
        require_tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error",
        "-protocol_whitelist", "file", "-format_whitelist", DEMUXERS,
        "-i", str(path), "-t", f"{max_seconds + 0.5:.3f}", "-vn", "-sn", "-dn",
        "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1",
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=300, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").replace(str(path), "upload")
        reason = reason.strip().splitlines()
        raise ApiError(422, "not_audio", "the upload could not be decoded as audio",
                       detail=(reason[-1] if reason else f"ffmpeg exit {proc.returncode}")[:300])
    pcm = np.frombuffer(proc.stdout[: len(proc.stdout) // 2 * 2], dtype="<i2")
    if pcm.size == 0:
        raise ApiError(422, "no_audio", "the upload holds no decodable audio samples")
    if pcm.size > max_seconds * SAMPLE_RATE:
        raise LimitExceeded(limit, max_seconds,
                            f"audio longer than the limit of {max_seconds:g} s")
    return pcm.astype(np.float32) / 32768.0


def split_speech(audio: np.ndarray, max_seconds: float = MAX_SEGMENT_SECONDS,
                 ) -> list[tuple[float, float]]:
    """Speech chunks (start, end) in seconds, each <= `max_seconds`, found with webrtcvad.

    Audio no longer than `max_seconds` is one chunk (nothing dropped). Longer audio: speech frames
    are smoothed (short gaps filled, blips dropped, padded), neighbouring regions merged while the
    chunk stays within the limit, and regions longer than the limit cut evenly.
    """
    duration = audio.size / SAMPLE_RATE
    if duration <= max_seconds:
        return [(0.0, duration)]
    regions = _speech_regions(audio)
    chunks: list[tuple[float, float]] = []
    for start, end in regions:
        if chunks and end - chunks[-1][0] <= max_seconds:
            chunks[-1] = (chunks[-1][0], end)
            continue
        pieces = int(np.ceil((end - start) / max_seconds))
        step = (end - start) / pieces
        chunks.extend((start + i * step, start + (i + 1) * step) for i in range(pieces))
    return [(round(s, 3), round(e, 3)) for s, e in chunks]


def _speech_regions(audio: np.ndarray) -> list[tuple[float, float]]:
    """webrtcvad speech regions in seconds, smoothed."""
    import webrtcvad

    vad = webrtcvad.Vad(VAD_AGGRESSIVENESS)
    frame = SAMPLE_RATE * VAD_FRAME_MS // 1000
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    flags = [vad.is_speech(pcm[i : i + frame].tobytes(), SAMPLE_RATE)
             for i in range(0, pcm.size - frame + 1, frame)]
    step = VAD_FRAME_MS / 1000
    duration = audio.size / SAMPLE_RATE
    regions: list[list[float]] = []
    for i, speech in enumerate(flags):
        if not speech:
            continue
        t = i * step
        if regions and t - regions[-1][1] < VAD_MIN_GAP_S:
            regions[-1][1] = t + step
        else:
            regions.append([t, t + step])
    return [(max(0.0, s - VAD_PAD_S), min(duration, e + VAD_PAD_S))
            for s, e in regions if e - s >= VAD_MIN_SPEECH_S]
