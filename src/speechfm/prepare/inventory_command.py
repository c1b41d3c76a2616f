"""CLI verb `speechfm inventory`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "List an archive's files (path, size, mtime) without reading them: prepare's DVC input."

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("archive", type=Path, help="archive root (channel/YYYY/MM/DD/*.ts)")
    p.add_argument("--out", type=Path, required=True,
                   help="inventory table to write (TSV: path, bytes, mtime_ns)")


def run(args: argparse.Namespace) -> int:
    import time

    from speechfm.prepare.inventory import write_inventory

    start = time.monotonic()
    files, changed = write_inventory(args.archive, args.out)
    log.info("%d files in %s listed in %.1f s; %s %s", files, args.archive,
             time.monotonic() - start, args.out, "written" if changed else "unchanged")
    return 0
