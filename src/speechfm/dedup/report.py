"""The dedup report: groups, their sizes, hours removed per channel, the largest groups as
examples, what the search compared, and (with ground truth) precision, recall and near-misses;
as JSON (a DVC metric) and a plot."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from speechfm.core.constants import SAMPLE_RATE
from speechfm.dedup.catalog import Catalog
from speechfm.dedup.config import DedupConfig

EXAMPLES = 10  # largest groups listed in the report
EXAMPLE_MEMBERS = 8  # members listed per example


def build(catalog: Catalog, rep: np.ndarray, dropped: np.ndarray, valid: set[str],
          config: DedupConfig, found: Any, quality: dict | None,
          timings: dict[str, float]) -> dict[str, Any]:
    """The report as a dict (see the module doc); hours are of audio in the manifests."""
    n = len(catalog)
    hours = catalog.frames / SAMPLE_RATE / 3600
    is_dropped = np.zeros(n, dtype=bool)
    is_dropped[dropped] = True
    in_group = rep >= 0
    members = np.flatnonzero(in_group & (rep != np.arange(n)))
    sizes = Counter(Counter(rep[in_group].tolist()).values())
    per_channel = {}
    for c, name in enumerate(catalog.channels):
        mine = catalog.channel == c
        per_channel[name] = {"segments": int(mine.sum()), "hours": round(float(hours[mine].sum()), 4),
                             "removed_segments": int((mine & is_dropped).sum()),
                             "hours_removed": round(float(hours[mine & is_dropped].sum()), 4)}
    total_hours = float(hours.sum())
    removed_hours = float(hours[is_dropped].sum())
    groups = Counter(rep[members].tolist())
    examples = []
    for kept, size in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))[:EXAMPLES]:
        listed = np.flatnonzero(rep == kept)[1:EXAMPLE_MEMBERS + 1]
        examples.append({"size": size + 1, "kept": catalog.describe(kept),
                         "copies": [catalog.describe(int(s)) | {"removed": bool(is_dropped[s])}
                                    for s in listed]})
    report: dict[str, Any] = {
        "enabled": config.enabled,
        "settings": config.to_dict(),
        "segments": n,
        "hours": round(total_hours, 4),
        "groups": len(groups),
        "grouped_segments": int(in_group.sum()),
        "removed_segments": int(is_dropped.sum()),
        "hours_removed": round(removed_hours, 4),
        "share_removed": round(removed_hours / total_hours, 4) if total_hours else 0.0,
        "groups_with_valid": len({int(rep[s]) for s in np.flatnonzero(in_group)
                                  if catalog.manifest_path(int(s)) in valid}),
        "group_sizes": {str(k): v for k, v in sorted(sizes.items())},
        "per_channel": per_channel,
        "search": dict(found.counts) if found is not None else {},
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "examples": examples,
    }
    if quality is not None:
        report["truth"] = {k: round(v, 4) if isinstance(v, float) else v
                           for k, v in quality.items()}
    return report


def metrics(report: dict[str, Any]) -> dict[str, float]:
    """The numbers of a report for MLflow (flat)."""
    flat = {k: float(report[k]) for k in ("segments", "hours", "groups", "grouped_segments",
                                          "removed_segments", "hours_removed", "share_removed")}
    flat |= {f"truth/{k}": float(v) for k, v in report.get("truth", {}).items()
             if isinstance(v, (int, float))}
    flat |= {f"seconds/{k}": float(v) for k, v in report["seconds"].items()}
    return flat


def write(report: dict[str, Any], json_path: Path, png_path: Path) -> None:
    """Write the report as JSON and its plot (hours kept and removed per channel, group sizes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tmp = json_path.with_name(json_path.name + ".part")
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, json_path)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    per = report["per_channel"]
    names = list(per)
    x = np.arange(len(names))
    removed = np.array([per[c]["hours_removed"] for c in names])
    kept = np.array([per[c]["hours"] for c in names]) - removed
    ax1.bar(x, kept, label="kept")
    ax1.bar(x, removed, bottom=kept, label="removed (copies)")
    ax1.set_xticks(x, names, rotation=30, ha="right")
    ax1.set(ylabel="hours", title=f"Removed {report['hours_removed']:.3g} h "
                                  f"({100 * report['share_removed']:.1f}%)")
    ax1.legend()
    sizes = report["group_sizes"]
    ax2.bar([int(k) for k in sizes], list(sizes.values()), edgecolor="k")
    ax2.set(xlabel="segments in group", ylabel="groups", title=f"{report['groups']} groups")
    fig.tight_layout()
    tmp = png_path.with_name(png_path.name + ".part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)
