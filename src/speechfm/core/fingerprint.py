"""Audio fingerprints of speech segments, written by `prepare` and compared by `dedup`.

A fingerprint is a sequence of 32-bit codes, one per 64 ms, in the manner of Haitsma & Kalker's
sub-fingerprints: the signs of the time-and-frequency second differences of the energies in 33
mel bands (250-4000 Hz), from 64 ms windows every 16 ms (at 8 kHz: the 16 kHz samples averaged in
pairs, a crude low-pass that halves the cost; on the demo it lost one duplicate pair in ~130),
smoothed over ~0.5 s. Signs of energy
differences do not change with the gain; windows four times the step and the smoothing keep them
stable across codecs, sample-rate chains and time offsets. On the demo, copies through MP2 or AAC
at 44.1 or 48 kHz differ in 2-12% of their bits, other speech (even the same voice over the same
music bed) in ~40%.

Beside the codes, each segment has a few *keys*: the codes of 16 ms frames (four phases of the
64 ms grid, so a copy shifted by any offset finds one within 8 ms) that a hash selects one in
`KEY_EVERY`, with their frame positions. The same audio selects the same keys, so copies meet in
hash buckets (`dedup` sorts the keys) without comparing every pair of segments.

Stored per shard in `<shard>.fp.npz` beside `<shard>.index.jsonl`, row i for index line i.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.errors import SpeechfmError

FINGERPRINT_SUFFIX = ".fp.npz"
"""Sidecar of a shard: `<unit>.tar.fp.npz` beside `<unit>.tar.index.jsonl`."""

VERSION = 1
RATE = SAMPLE_RATE // 2  # analysis rate (Hz): the bands end at 4 kHz, half the FFTs' cost
WINDOW = 512  # samples per STFT frame at RATE (64 ms: four times the step, so a shift matters
# little)
STEP = 128  # samples at RATE between fine frames (16 ms)
BANDS = 33  # mel bands -> 32 bits per code
FMIN, FMAX = 250.0, 4000.0  # Hz: the band where speech carries its content
SMOOTH = 33  # fine frames of the triangular smoothing along time (~0.5 s); odd
DECIMATE = 4  # fine frames per code (64 ms)
LAG = 8  # fine frames between the energies whose change a bit compares
KEY_EVERY = 8  # one fine frame in this many (by a hash of its code) becomes a key; a power of 2
KEY_FLOOR_DB = -60.0  # no keys from frames quieter than this (dBFS): silence is not content
CODE_SECONDS = STEP * DECIMATE / RATE
"""Seconds per code."""
KEYS_PER_SECOND = RATE / STEP / KEY_EVERY
"""Keys a second of audio has on average (fewer where it is quiet)."""

_HASH = np.uint32(0x9E3779B1)  # Fibonacci hashing: spreads codes evenly over the selector


@dataclass(frozen=True)
class Fingerprint:
    """Codes every 64 ms, and keys (codes of selected 16 ms frames) with their fine positions."""

    codes: np.ndarray  # uint32
    keys: np.ndarray  # uint32
    key_pos: np.ndarray  # uint16: fine frame (16 ms) of each key


def settings() -> dict[str, float | int]:
    """What shapes a fingerprint: stored in every sidecar, so sidecars of other settings are
    refused instead of compared."""
    return {"version": VERSION, "window": WINDOW, "step": STEP, "bands": BANDS, "fmin": FMIN,
            "fmax": FMAX, "smooth": SMOOTH, "lag": LAG, "decimate": DECIMATE,
            "key_every": KEY_EVERY, "rate": RATE,
            "key_floor_db": KEY_FLOOR_DB, "sample_rate": SAMPLE_RATE}


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """(STFT window, first FFT bin of each band and the end of the last) for the settings."""
    def mel(f: np.ndarray) -> np.ndarray:
        return 2595 * np.log10(1 + f / 700)

    edges_hz = 700 * (10 ** (np.linspace(mel(np.float64(FMIN)), mel(np.float64(FMAX)),
                                         BANDS + 1) / 2595) - 1)
    bins = np.searchsorted(np.fft.rfftfreq(WINDOW, 1 / RATE), edges_hz)
    return np.hanning(WINDOW).astype(np.float32), bins.astype(np.intp)


def _box(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average of `width` rows (only where the window is whole), from a running sum."""
    total = np.zeros((len(x) + 1, x.shape[1]), dtype=np.float64)
    np.cumsum(x, axis=0, out=total[1:])
    return (total[width:] - total[:-width]) / width


_WINDOW, _BINS = _tables()
# the summed band energy of full-band noise at KEY_FLOOR_DB (Parseval over a one-sided spectrum)
_FLOOR = np.float32(10 ** (KEY_FLOOR_DB / 10) * WINDOW**2 * np.mean(_WINDOW**2) / 2)
_KEY_SHIFT = np.uint32(33 - KEY_EVERY.bit_length())  # top bits of the hash that must be 0


def fingerprint(samples: np.ndarray) -> Fingerprint:
    """The fingerprint of int16 mono samples at SAMPLE_RATE (empty for audio under ~0.7 s)."""
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy.fft import rfft

    pcm = np.asarray(samples, dtype=np.float32)
    pcm = pcm[: len(pcm) // 2 * 2]
    x = (pcm[0::2] + pcm[1::2]) * np.float32(0.5 / 32768)  # to RATE: pairs averaged (a low-pass)
    if len(x) < WINDOW + STEP * (SMOOTH + LAG):
        empty = np.zeros(0, np.uint32)
        return Fingerprint(empty, empty, np.zeros(0, np.uint16))
    frames = sliding_window_view(x, WINDOW)[::STEP] * _WINDOW
    spec = rfft(frames, axis=1)[:, _BINS[0]:_BINS[-1]]
    power = spec.real**2 + spec.imag**2
    energy = np.add.reduceat(power, _BINS[:-1] - _BINS[0], axis=1)
    half = (SMOOTH + 1) // 2  # a triangle of SMOOTH frames is two boxes of `half`
    smooth = _box(_box(energy, half), half).astype(np.float32)
    freq = smooth[:, :-1] - smooth[:, 1:]
    bits = (freq[LAG:] - freq[:-LAG]) > 0
    fine = np.packbits(bits, axis=1, bitorder="little").view("<u4")[:, 0]
    # keys: fine frames whose code hashes to 0 mod KEY_EVERY, loud enough to be content
    loud = smooth[LAG:].sum(axis=1) > _FLOOR
    chosen = np.flatnonzero(((fine * _HASH) >> _KEY_SHIFT) == 0)
    chosen = chosen[loud[chosen] & (fine[chosen] != 0) & (fine[chosen] != 0xFFFFFFFF)]
    return Fingerprint(np.ascontiguousarray(fine[::DECIMATE]), fine[chosen].copy(),
                       chosen.astype(np.uint16))


def write_sidecar(path: Path, prints: Sequence[Fingerprint]) -> None:
    """Write the fingerprints of a shard's segments (index order) to `path`, fsynced."""
    def starts(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)

    codes = [p.codes for p in prints]
    keys = [p.keys for p in prints]
    arrays = {
        "meta": np.array(json.dumps(settings())),
        "code_start": starts(codes),
        "codes": np.concatenate(codes or [np.zeros(0, np.uint32)]).astype("<u4"),
        "key_start": starts(keys),
        "keys": np.concatenate(keys or [np.zeros(0, np.uint32)]).astype("<u4"),
        "key_pos": np.concatenate([p.key_pos for p in prints] or [np.zeros(0, np.uint16)])
        .astype("<u2"),
    }
    with open(path, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


@dataclass(frozen=True)
class Sidecar:
    """The fingerprints of one shard: row i's codes are codes[code_start[i]:code_start[i+1]]."""

    code_start: np.ndarray
    codes: np.ndarray
    key_start: np.ndarray
    keys: np.ndarray
    key_pos: np.ndarray

    def __len__(self) -> int:
        return len(self.code_start) - 1

    def codes_of(self, row: int) -> np.ndarray:
        return self.codes[self.code_start[row]:self.code_start[row + 1]]


def read_sidecar(path: Path, codes: bool = True) -> Sidecar:
    """Load a shard's fingerprints (without the codes: only the keys, a third of the file); a
    missing file or one made with other settings is a SpeechfmError."""
    names = ["code_start", "key_start", "keys", "key_pos"] + (["codes"] if codes else [])
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in names}
    except FileNotFoundError:
        raise SpeechfmError("no fingerprints beside this shard", path=path,
                            hint="the shards were prepared without fingerprints (an older "
                                 "speechfm, or fingerprint: false): prepare again into a new "
                                 "folder to deduplicate") from None
    except (OSError, ValueError, KeyError) as exc:
        raise SpeechfmError(f"unreadable fingerprint file: {exc}", path=path) from None
    if meta != settings():
        diff = {k: (meta.get(k), v) for k, v in settings().items() if meta.get(k) != v}
        raise SpeechfmError(f"fingerprints were made with other settings {diff} (found, now)",
                            path=path, hint="prepare the archive again into a new folder")
    return Sidecar(codes=arrays.pop("codes", np.zeros(0, np.uint32)), **arrays)
