"""VAD quality of a prepared dataset against the demo archive's ground truth (`*.truth.json`):
frame-level speech recall and precision of the kept segments, and the share of music-only,
noise-only and jingle time kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from speechfm.core.constants import GROUND_TRUTH_SUFFIX, INDEX_SUFFIX
from speechfm.core.segment import read_index

FRAME = 0.01  # seconds per evaluation frame


def _mask(n: int, spans: list[tuple[float, float]]) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    for a, b in spans:
        m[round(a / FRAME):round(b / FRAME)] = True
    return m


def evaluate(archive: Path, out: Path) -> dict[str, float]:
    """Pooled frame counts over every source with ground truth, as ratios."""
    kept_spans: dict[str, list[tuple[float, float]]] = {}
    for idx in (out / "shards").rglob(f"*{INDEX_SUFFIX}"):
        for seg in read_index(idx):
            kept_spans.setdefault(seg.source, []).append((seg.start, seg.end))
    totals = dict.fromkeys(["speech", "kept", "hit", "music", "music_kept", "noise",
                            "noise_kept", "jingle", "jingle_kept"], 0)
    for truth_path in sorted(archive.rglob(f"*{GROUND_TRUTH_SUFFIX}")):
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        n = int(np.ceil(truth["duration"] / FRAME))
        by_kind = {k: _mask(n, [(iv["start"], iv["end"]) for iv in truth["intervals"]
                                if iv["kind"] == k]) for k in ("speech", "music", "noise", "jingle")}
        kept = _mask(n, kept_spans.get(truth["file"], []))
        speech = by_kind["speech"]
        totals["speech"] += speech.sum()
        totals["kept"] += kept.sum()
        totals["hit"] += (kept & speech).sum()
        for k in ("music", "noise", "jingle"):
            only = by_kind[k] & ~speech
            totals[k] += only.sum()
            totals[f"{k}_kept"] += (kept & only).sum()

    def ratio(a: str, b: str) -> float:
        return float(totals[a] / totals[b]) if totals[b] else float("nan")

    return {"speech_recall": ratio("hit", "speech"), "speech_precision": ratio("hit", "kept"),
            "music_kept": ratio("music_kept", "music"), "noise_kept": ratio("noise_kept", "noise"),
            "jingle_kept": ratio("jingle_kept", "jingle"),
            "speech_hours": float(totals["speech"] * FRAME / 3600)}
