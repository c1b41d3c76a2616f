"""Sound sources of the demo archive: espeak-ng Finnish speech and synthesized music, noise, jingles.

Every generator takes a numpy Generator and returns mono float32 audio in [-1, 1] at the rate
asked for, so a seed fixes the whole archive.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from math import gcd

import numpy as np
from scipy.signal import lfilter, resample_poly

from speechfm.core.errors import SpeechfmError, require_tool

ESPEAK_RATE = 22_050
VOICE_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "croak", "iven", "linda", "steph", "adam",
)


@dataclass(frozen=True)
class Voice:
    """One espeak-ng speaker setting."""

    variant: str
    rate: int  # words per minute
    pitch: int  # 0-99

    @property
    def name(self) -> str:
        return f"fi+{self.variant}/s{self.rate}/p{self.pitch}"

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Voice:
        return cls(
            variant=str(rng.choice(VOICE_VARIANTS)),
            rate=int(rng.integers(130, 191)),
            pitch=int(rng.integers(25, 76)),
        )


def resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    if src_rate == dst_rate:
        return audio.astype(np.float32)
    g = gcd(src_rate, dst_rate)
    return resample_poly(audio, dst_rate // g, src_rate // g).astype(np.float32)


def speak(text: str, voice: Voice, rate: int) -> np.ndarray:
    """Finnish speech for `text` from espeak-ng, trimmed of leading/trailing silence."""
    espeak = require_tool("espeak-ng")
    proc = subprocess.run(
        [espeak, "-v", f"fi+{voice.variant}", "-s", str(voice.rate), "-p", str(voice.pitch),
         "--stdout", text],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        raise SpeechfmError(f"espeak-ng failed for voice {voice.name}: {proc.stderr.decode()[:200]}")
    # espeak-ng writes a streaming WAV header (sizes unknown): 44 bytes, then s16le mono 22.05 kHz.
    pcm = np.frombuffer(proc.stdout[44:], dtype="<i2").astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(pcm) > 1e-3)
    if loud.size:
        pcm = pcm[loud[0] : loud[-1] + 1]
    peak = float(np.max(np.abs(pcm))) or 1.0
    return resample(pcm / peak, ESPEAK_RATE, rate)


def _envelope(n: int, rate: int, attack: float, release: float) -> np.ndarray:
    env = np.ones(n, dtype=np.float32)
    a = min(n, max(1, int(attack * rate)))
    r = min(n - a, max(1, int(release * rate)))
    env[:a] = np.linspace(0, 1, a, dtype=np.float32)
    if r > 0:
        env[n - r :] = np.linspace(1, 0, r, dtype=np.float32)
    return env


def _tone(freq: float, n: int, rate: int, harmonics: int, decay: float) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / rate
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k**1.3 for k in range(1, harmonics + 1))
    return (wave * np.exp(-decay * t)).astype(np.float32)


def music(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    """Tonal and percussive music: a chord progression with a melody over a drum pattern."""
    n = int(seconds * rate)
    out = np.zeros(n, dtype=np.float32)
    bpm = float(rng.uniform(80, 150))
    beat = int(rate * 60 / bpm)
    root = 110.0 * 2 ** (int(rng.integers(0, 12)) / 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    progression = rng.choice([0, 3, 4, 5], size=8)
    harmonics = int(rng.integers(2, 7))
    # chords: one per bar of 4 beats
    for bar, start in enumerate(range(0, n, 4 * beat)):
        length = min(4 * beat, n - start)
        degree = int(progression[bar % len(progression)])
        for step in (0, 2, 4):
            semis = scale[(degree + step) % 7] + 12 * ((degree + step) // 7)
            out[start : start + length] += 0.18 * _tone(
                root * 2 ** (semis / 12), length, rate, harmonics, decay=0.6
            )
    # melody: one note per beat, sometimes rests
    for start in range(0, n, beat):
        if rng.random() < 0.2:
            continue
        length = min(beat, n - start)
        semis = scale[int(rng.integers(0, 8))] + 24
        out[start : start + length] += 0.25 * _tone(
            root * 2 ** (semis / 12), length, rate, harmonics=3, decay=3.0
        )
    # drums: kick on 1 and 3, snare on 2 and 4, hi-hat on eighths
    for i, start in enumerate(range(0, n, beat // 2)):
        length = min(beat // 2, n - start)
        t = np.arange(length, dtype=np.float32) / rate
        if i % 4 == 0:
            sweep = 2 * np.pi * (50 * t + 60 * (1 - np.exp(-t * 30)) / 30)
            out[start : start + length] += 0.6 * np.sin(sweep) * np.exp(-t * 12)
        elif i % 4 == 2:
            out[start : start + length] += 0.3 * rng.standard_normal(length) * np.exp(-t * 25)
        hat = rng.standard_normal(length).astype(np.float32)
        hat = np.diff(hat, prepend=0.0)  # crude high-pass
        out[start : start + length] += 0.05 * hat * np.exp(-t * 60)
    return _normalise(out * _envelope(n, rate, 0.05, 0.3))


def jingle(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    """A short bright arpeggio, like a station ident."""
    n = int(seconds * rate)
    out = np.zeros(n, dtype=np.float32)
    base = 440.0 * 2 ** (int(rng.integers(-5, 6)) / 12)
    notes = [0, 4, 7, 12, 16, 19, 24]
    step = max(1, n // len(notes))
    for i, semis in enumerate(notes):
        start = i * step
        length = n - start
        out[start:] += 0.3 * _tone(base * 2 ** (semis / 12), length, rate, harmonics=4, decay=2.5)
    return _normalise(out * _envelope(n, rate, 0.01, 0.2))


def noise(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    """White, pink or brown noise, optionally amplitude modulated (wind, traffic, hiss)."""
    n = int(seconds * rate)
    white = rng.standard_normal(n).astype(np.float32)
    colour = rng.choice(["white", "pink", "brown"])
    if colour == "pink":
        b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
        a = [1, -2.494956002, 2.017265875, -0.522189400]
        sig = lfilter(b, a, white)
    elif colour == "brown":
        sig = lfilter([1.0], [1.0, -0.995], white)
    else:
        sig = white
    if rng.random() < 0.5:
        t = np.arange(n) / rate
        sig = sig * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.8) * t))
    return _normalise(np.asarray(sig, dtype=np.float32) * _envelope(n, rate, 0.05, 0.05))


def silence(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    """Near silence: a noise floor around -70 dBFS."""
    return (rng.standard_normal(int(seconds * rate)) * 3e-4).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return (x / peak).astype(np.float32) if peak > 0 else x.astype(np.float32)


def db(gain_db: float) -> float:
    return float(10 ** (gain_db / 20))
