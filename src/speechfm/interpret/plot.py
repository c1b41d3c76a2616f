"""The LUR figure: LUR % per transformer layer, one curve per model (SVG and PNG)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from speechfm.core.errors import SpeechfmError


def read_report(path: Path) -> dict:
    """A `lur.json` (or the report folder holding it)."""
    file = path / "lur.json" if path.is_dir() else path
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(report.get("layers"), list) or not isinstance(report.get("lur"), list):
            raise KeyError("layers/lur")
    except (OSError, ValueError, KeyError) as exc:
        raise SpeechfmError(f"not an LUR report: {exc}", path=file,
                            hint="pass report folders written by 'speechfm lur'") from exc
    return report


def plot_reports(reports: list[dict], stem: Path, labels: list[str] | None = None) -> list[Path]:
    """Draw the reports' LUR curves into `stem`.svg and `stem`.png; return the two paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, report in enumerate(reports):
        label = labels[i] if labels else report.get("model", f"model {i + 1}")
        ax.plot(report["layers"], report["lur"], marker="o", label=label)
    ax.set_xlabel("transformer layer")
    ax.set_ylabel("layer utilization rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths = []
    for suffix in (".svg", ".png"):
        path = stem.with_suffix(suffix)
        tmp = path.with_name(path.name + ".part")
        fig.savefig(tmp, format=suffix[1:], dpi=120, metadata={"Date": None} if suffix == ".svg" else None)
        os.replace(tmp, path)
        paths.append(path)
    plt.close(fig)
    return paths
