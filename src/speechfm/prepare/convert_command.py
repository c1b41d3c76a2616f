"""CLI verb `speechfm convert`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Convert an archive to 16 kHz mono FLAC files, same folder tree (the reference's step 1)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import add_workers

    p.add_argument("archive", type=Path, help="archive root")
    p.add_argument("--out", type=Path, required=True, help="output folder for the FLAC tree")
    add_workers(p, 2)


def run(args: argparse.Namespace) -> int:
    from speechfm.prepare.convert import convert

    summary = convert(args.archive, args.out, args.workers)
    print(json.dumps(summary, indent=1))
    return 0
