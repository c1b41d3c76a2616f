"""CLI verb `speechfm verify`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "Check a prepared dataset: every manifest entry read by offset, decoded, counted, hashed."

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prepared", type=Path, help="prepare's output folder (shards/, manifests/)")


def run(args: argparse.Namespace) -> int:
    from speechfm.prepare.verify import verify

    checked, problems = verify(args.prepared)
    for problem in problems:
        print(problem)
    print(f"{checked} entries checked, {len(problems)} problems")
    return 1 if problems else 0
