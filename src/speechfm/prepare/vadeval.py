"""VAD quality of a prepared dataset against ground truth beside the sources (`*.truth.json`,
the demo archive's schema): frame-level speech recall and precision of the kept segments, and the
share of music-only, noise-only and jingle time kept.

Any archive gets a result: without usable ground truth it says `"ground_truth": false` and holds
no scores (a DVC metric that exists for every archive). A ground-truth file that does not parse
or has another schema is skipped with a warning naming it, never a crash after the merge.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from speechfm.core.constants import INDEX_SUFFIX
from speechfm.core.segment import read_index
from speechfm.core.truth import TruthError, read_all

FRAME = 0.01  # seconds per evaluation frame
KINDS = ("speech", "music", "noise", "jingle")
QUALITY_FILE = "vad_quality.json"


def _mask(n: int, spans: list[tuple[float, float]]) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    for a, b in spans:
        m[round(a / FRAME):round(b / FRAME)] = True
    return m


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_truth(truth: dict[str, Any]) -> None:
    """The fields VAD scoring reads: `duration` (s) and `intervals` ({start, end, kind}); raises
    TruthError saying what is wrong."""
    if not _number(truth.get("duration")) or truth["duration"] <= 0:
        raise TruthError("no 'duration' in seconds")
    if not isinstance(truth.get("intervals"), list):
        raise TruthError("no 'intervals' list")
    for iv in truth["intervals"]:
        if not (isinstance(iv, dict) and _number(iv.get("start")) and _number(iv.get("end"))
                and isinstance(iv.get("kind"), str)):
            raise TruthError(f"an interval is not {{start, end, kind}}: {str(iv)[:80]}")


def evaluate(archive: Path, out: Path) -> dict[str, Any]:
    """Pooled frame counts over every source with usable ground truth, as ratios; without any,
    `{"ground_truth": false}` and the number of files skipped."""
    truths, skipped = read_all(archive, "VAD quality", check_truth)
    if not truths:
        return {"ground_truth": False, "truth_files": 0, "truth_files_skipped": skipped}

    kept_spans: dict[str, list[tuple[float, float]]] = {}
    for idx in (out / "shards").rglob(f"*{INDEX_SUFFIX}"):
        for seg in read_index(idx):
            kept_spans.setdefault(seg.source, []).append((seg.start, seg.end))
    totals = dict.fromkeys(["speech", "kept", "hit", "music", "music_kept", "noise",
                            "noise_kept", "jingle", "jingle_kept"], 0)
    for truth in truths:
        n = int(np.ceil(truth["duration"] / FRAME))
        by_kind = {k: _mask(n, [(iv["start"], iv["end"]) for iv in truth["intervals"]
                                if iv["kind"] == k]) for k in KINDS}
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

    return {"ground_truth": True, "truth_files": len(truths), "truth_files_skipped": skipped,
            "speech_recall": ratio("hit", "speech"), "speech_precision": ratio("hit", "kept"),
            "music_kept": ratio("music_kept", "music"), "noise_kept": ratio("noise_kept", "noise"),
            "jingle_kept": ratio("jingle_kept", "jingle"),
            "speech_hours": float(totals["speech"] * FRAME / 3600)}


def write_quality(archive: Path, out: Path) -> dict[str, Any]:
    """Score the VAD into OUT/vad_quality.json (a DVC metric for every archive), atomically."""
    quality = evaluate(archive, out)
    tmp = out / (QUALITY_FILE + ".part")
    tmp.write_text(json.dumps(quality, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / QUALITY_FILE)
    return quality
