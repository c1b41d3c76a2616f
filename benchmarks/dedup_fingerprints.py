"""Which fingerprint for `dedup`: speechfm's own (speechfm.core.fingerprint) against Chromaprint (the
system's libchromaprint, raw 32-bit sub-fingerprints, through ctypes), on the segments of a
prepared demo with ground truth.

For every duplicate pair and near-miss pair of the truth (speechfm.dedup.truth): the bit error
rate at the best alignment and the share of aligned codes that are exactly equal (what a hash
index can find); for every segment: whether it gets enough codes (a 2 s segment must); and the
speed in audio seconds per CPU second.

    /work/main/.venv/bin/python benchmarks/dedup_fingerprints.py PREPARED ARCHIVE
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]


class Chromaprint:
    """Raw Chromaprint fingerprints of 16 kHz int16 audio (default algorithm)."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(ctypes.util.find_library("chromaprint") or "libchromaprint.so.1")
        lib.chromaprint_new.restype = ctypes.c_void_p
        lib.chromaprint_new.argtypes = [ctypes.c_int]
        lib.chromaprint_start.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.chromaprint_feed.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        lib.chromaprint_finish.argtypes = [ctypes.c_void_p]
        lib.chromaprint_get_raw_fingerprint.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_uint32)),
            ctypes.POINTER(ctypes.c_int)]
        lib.chromaprint_dealloc.argtypes = [ctypes.c_void_p]
        self.lib, self.ctx = lib, lib.chromaprint_new(1)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(samples, dtype="<i2")
        self.lib.chromaprint_start(self.ctx, 16000, 1)
        self.lib.chromaprint_feed(self.ctx, x.ctypes.data, len(x))
        self.lib.chromaprint_finish(self.ctx)
        ptr, n = ctypes.POINTER(ctypes.c_uint32)(), ctypes.c_int()
        self.lib.chromaprint_get_raw_fingerprint(self.ctx, ctypes.byref(ptr), ctypes.byref(n))
        out = np.ctypeslib.as_array(ptr, shape=(n.value,)).copy() if n.value else np.zeros(
            0, np.uint32)
        self.lib.chromaprint_dealloc(ptr)
        return out


def best_alignment(a: np.ndarray, b: np.ndarray, min_overlap: int = 4) -> tuple[float, float]:
    """(bit error rate, share of equal codes) at the alignment with the lowest bit error rate."""
    best = (0.5, 0.0)
    for lag in range(-len(b) + min_overlap, len(a) - min_overlap + 1):
        x, y = a[max(0, lag):], b[max(0, -lag):]
        n = min(len(x), len(y))
        diff = x[:n] ^ y[:n]
        ber = float(np.bitwise_count(diff).mean()) / 32
        if ber < best[0]:
            best = (ber, float((diff == 0).mean()))
    return best


def main() -> None:
    import soundfile as sf

    from speechfm.core.fingerprint import fingerprint
    from speechfm.dedup.catalog import read_catalog
    from speechfm.dedup.truth import near_miss_pairs, read_truth, true_pairs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prepared", type=Path)
    ap.add_argument("archive", type=Path)
    args = ap.parse_args()
    catalog = read_catalog(args.prepared)
    audio = []
    for seg in range(len(catalog)):
        with open(args.prepared / catalog.shards[catalog.shard[seg]].path, "rb") as f:
            f.seek(int(catalog.offset[seg]))
            audio.append(sf.read(io.BytesIO(f.read(int(catalog.size[seg]))), dtype="int16")[0])
    seconds = sum(len(a) for a in audio) / 16000
    methods = {"speechfm": lambda a: fingerprint(a).codes, "chromaprint": Chromaprint()}
    truth = read_truth(args.archive)
    dups = true_pairs(catalog, truth, 0.5)
    near = near_miss_pairs(catalog, truth, dups)
    results = {"segments": len(catalog), "audio_seconds": round(seconds, 1),
               "duplicate_pairs": len(dups), "near_miss_pairs": len(near)}
    for name, method in methods.items():
        method(audio[0])  # warm-up (imports)
        t0 = time.process_time()
        codes = [method(a) for a in audio]
        cpu = time.process_time() - t0
        short = [i for i, a in enumerate(audio) if len(a) < 3 * 16000]
        dup = np.array([best_alignment(codes[x], codes[y]) for x, y in dups
                        if min(len(codes[x]), len(codes[y])) >= 4])
        nm = np.array([best_alignment(codes[x], codes[y]) for x, y in near
                       if min(len(codes[x]), len(codes[y])) >= 4])
        results[name] = {
            "x_real_time_per_core": round(seconds / cpu),
            "codes_per_second": round(sum(len(c) for c in codes) / seconds, 2),
            "segments_under_3s": len(short),
            "of_them_with_under_8_codes": sum(1 for i in short if len(codes[i]) < 8),
            "duplicate_pairs_scored": len(dup),
            "duplicate_ber_median_max": [round(float(np.median(dup[:, 0])), 3),
                                         round(float(dup[:, 0].max()), 3)],
            "duplicate_exact_share_median": round(float(np.median(dup[:, 1])), 3),
            "near_miss_ber_min_median": [round(float(nm[:, 0].min()), 3),
                                         round(float(np.median(nm[:, 0])), 3)],
        }
        print(name, results[name], flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
