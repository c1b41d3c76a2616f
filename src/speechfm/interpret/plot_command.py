"""CLI verb `speechfm lur-plot`: several LUR reports as several curves in one figure."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Overlay the LUR curves of several `speechfm lur` reports (SVG and PNG)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("reports", type=Path, nargs="+", help="report folders (or their lur.json)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for lur.svg and lur.png (or a file stem, e.g. figs/models.svg)")
    p.add_argument("--labels", nargs="+", default=None, help="curve labels (default: model names)")


def run(args: argparse.Namespace) -> int:
    from speechfm.core.errors import SpeechfmError
    from speechfm.interpret.plot import plot_reports, read_report

    if args.labels and len(args.labels) != len(args.reports):
        raise SpeechfmError(f"{len(args.labels)} labels for {len(args.reports)} reports")
    reports = [read_report(path) for path in args.reports]
    if args.out.suffix.lower() in (".svg", ".png"):
        stem = args.out.with_suffix("")
    else:
        stem = args.out / "lur"
    stem.parent.mkdir(parents=True, exist_ok=True)
    for path in plot_reports(reports, stem, args.labels):
        print(path)
    return 0
