"""Streaming VAD (`speechfm.core.vad.RegionTracker`, `SpeechStream`): the regions of audio fed
piece by piece are the offline regions of `speech_regions`."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from speechfm.core.vad import (
    SILERO_WINDOW,
    RegionTracker,
    VadConfig,
    frame_decisions,
    speech_regions,
)


def _feed_in_pieces(tracker: RegionTracker, flags: np.ndarray, rng) -> list[tuple[int, int]]:
    out, i = [], 0
    while i < len(flags):
        n = int(rng.integers(1, 40))
        out += tracker.feed(flags[i:i + n])
        i += n
    return out


def test_tracker_gives_the_offline_regions_frame_by_frame() -> None:
    config = VadConfig(max_seconds=1e9)
    rng = np.random.default_rng(0)
    for _ in range(200):
        # speech and silence runs of 1-60 windows (32 ms): blips, bridged gaps, long pauses
        runs = rng.integers(1, 60, size=int(rng.integers(1, 30)))
        flags = np.concatenate([np.full(n, k % 2 == 1) for k, n in enumerate(runs)])
        total = len(flags) * SILERO_WINDOW
        tracker = RegionTracker(SILERO_WINDOW, config)
        got = _feed_in_pieces(tracker, flags, rng) + tracker.finish(total)
        assert got == speech_regions(flags, SILERO_WINDOW, total, config)


def test_tracker_cuts_at_max_seconds_and_keeps_every_speech_sample() -> None:
    config = VadConfig(max_seconds=2.0)
    flags = np.concatenate([np.zeros(20, bool), np.ones(200, bool), np.zeros(40, bool)])
    tracker = RegionTracker(SILERO_WINDOW, config)
    got = tracker.feed(flags) + tracker.finish(len(flags) * SILERO_WINDOW)
    assert all(e - s <= 2.0 * 16000 for s, e in got)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(got))  # pieces touch, none overlap
    (whole,) = speech_regions(flags, SILERO_WINDOW, len(flags) * SILERO_WINDOW, config)
    assert (got[0][0], got[-1][1]) == whole


@pytest.mark.parametrize("piece", [160, 4000])
def test_speech_stream_finds_the_offline_silero_regions(piece: int) -> None:
    """Real speech (espeak-ng) between music and silence, fed in 10 ms and 250 ms pieces."""
    from speechfm.core.vad import SpeechStream
    from speechfm.synth import sounds

    rng = np.random.default_rng(2)
    voice = sounds.Voice.sample(rng)
    parts = [sounds.music(rng, 4.0, 16000) * 0.3, np.zeros(16000, np.float32),
             sounds.speak("hyvää huomenta kaikille kuulijoille", voice, 16000) * 0.5,
             np.zeros(24000, np.float32),
             sounds.speak("tänään on kaunis ilma", voice, 16000) * 0.5,
             np.zeros(8000, np.float32)]
    pcm = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype(np.int16)
    flags, step = frame_decisions(pcm, VadConfig())
    offline = speech_regions(flags, step, len(pcm), VadConfig())
    stream = SpeechStream()
    got = []
    for i in range(0, len(pcm), piece):
        got += stream.feed(pcm[i:i + piece])
    got += stream.finish()
    assert len(offline) == 2 and len(got) == 2
    for (a, b), (c, d) in zip(got, offline):  # one model state vs the offline warm-up lanes
        assert abs(a - c) <= 0.1 * 16000 and abs(b - d) <= 0.1 * 16000
    assert got[0][0] > 4.0 * 16000  # the music gave no region
