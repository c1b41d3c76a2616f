"""Statistics of a prepared dataset: hours in, speech kept, share dropped per channel and year, and
the segment-length histogram, as JSON and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from speechfm.core.constants import SAMPLE_RATE

HIST_BIN_SECONDS = 1.0


def compute(records: list[dict[str, Any]], frames: np.ndarray,
            max_seconds: float) -> dict[str, Any]:
    """Totals, per-channel and per-channel-year breakdowns, and the segment-length histogram
    (`frames`: every segment's length in samples)."""
    groups: dict[str, dict[str, float]] = {}

    def add(key: str, item: dict[str, Any]) -> None:
        g = groups.setdefault(key, {"files": 0, "hours_in": 0.0, "hours_kept": 0.0,
                                    "hours_dropped_short": 0.0, "segments": 0})
        g["files"] += 1
        g["hours_in"] += item["seconds"] / 3600
        g["hours_kept"] += item["kept"] / 3600
        g["hours_dropped_short"] += item["dropped_short"] / 3600
        g["segments"] += item["segments"]

    for rec in records:
        year = rec["unit"][:4]
        for item in rec["stats"]:
            add("total", item)
            add(rec["channel"], item)
            add(f"{rec['channel']}/{year}", item)
    for g in groups.values():
        g["share_dropped"] = 1 - g["hours_kept"] / g["hours_in"] if g["hours_in"] else 0.0
    lengths = np.asarray(frames) / SAMPLE_RATE  # float64, as `Segment.seconds` of each
    edges = np.arange(0.0, max_seconds + HIST_BIN_SECONDS, HIST_BIN_SECONDS)
    counts, _ = np.histogram(lengths, bins=edges)
    rejects = sum(1 for rec in records for r in rec["rejects"] if r["action"] == "skipped")
    return {
        "total": groups.get("total", {}),
        "per_channel": {k: v for k, v in sorted(groups.items()) if "/" not in k and k != "total"},
        "per_channel_year": {k: v for k, v in sorted(groups.items()) if "/" in k},
        "rejected_files": rejects,
        "segment_seconds": {"bin_edges": edges.tolist(), "counts": counts.tolist(),
                            "mean": float(lengths.mean()) if len(lengths) else 0.0},
    }


def preload_plotting() -> None:
    """Import matplotlib (Agg): ~1 s of CPU that `prepare` spends in a thread of the otherwise idle
    parent while the workers build units, instead of serially after them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot


def write(stats: dict[str, Any], out: Path) -> list[Path]:
    """Write OUT/stats.json and OUT/stats.png."""
    preload_plotting()
    import matplotlib.pyplot as plt

    json_path, png_path = out / "stats.json", out / "stats.png"
    json_path.write_text(json.dumps(stats, indent=1), encoding="utf-8")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    hist = stats["segment_seconds"]
    edges = np.array(hist["bin_edges"])
    ax1.bar(edges[:-1], hist["counts"], width=np.diff(edges), align="edge", edgecolor="k")
    ax1.set(xlabel="segment length (s)", ylabel="segments", title="Segment lengths")
    per = stats["per_channel"]
    names = list(per)
    x = np.arange(len(names))
    ax2.bar(x - 0.2, [per[n]["hours_in"] for n in names], 0.4, label="hours in")
    ax2.bar(x + 0.2, [per[n]["hours_kept"] for n in names], 0.4, label="speech kept")
    ax2.set_xticks(x, names, rotation=30, ha="right")
    ax2.set(ylabel="hours", title="Per channel")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return [json_path, png_path]
