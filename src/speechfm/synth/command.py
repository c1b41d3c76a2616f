"""CLI verb `speechfm synth`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechfm.synth import SynthConfig

HELP = "Generate the demo broadcast archive (MPEG-TS + ground truth) and a labeled corpus."


def add_arguments(p: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import add_workers

    p.add_argument("--out", type=Path, default=Path("demo_archive"),
                   help="output folder (archive/ and labeled/ are written inside)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the demo's content: the same settings give the same bytes")
    p.add_argument("--channels", type=int, default=4, help="number of channels (radio and TV)")
    p.add_argument("--start", default="2021-01-31", help="first day, YYYY-MM-DD")
    p.add_argument("--days", type=int, default=2)
    p.add_argument("--hours-per-day", type=int, default=2)
    p.add_argument("--hour-seconds", type=float, default=90.0,
                   help="length of each broadcast 'hour' file in seconds (scale of the demo)")
    for split, count in SynthConfig().labeled.items():
        p.add_argument(f"--{split}-utterances", type=int, default=count,
                       help=f"utterances of the labeled {split} table (default {count})")
    add_workers(p, 2)
    p.add_argument("--only-for", type=Path, metavar="ARCHIVE",
                   help="generate only if ARCHIVE is this demo's archive (OUT/archive); otherwise "
                        "write OUT/synth.json saying the demo was skipped (dvc.yaml uses this so "
                        "that a real archive skips the demo stage)")


def run(args: argparse.Namespace) -> int:
    from speechfm.synth import synthesize

    if args.only_for is not None and args.only_for.resolve() != (args.out / "archive").resolve():
        args.out.mkdir(parents=True, exist_ok=True)
        note = {"skipped": True, "archive": str(args.only_for),
                "reason": "a real archive is configured; the demo is not needed"}
        (args.out / "synth.json").write_text(json.dumps(note, indent=1) + "\n")
        print(json.dumps(note, indent=1))
        return 0

    config = SynthConfig(
        seed=args.seed, channels=args.channels, start=args.start, days=args.days,
        hours_per_day=args.hours_per_day, hour_seconds=args.hour_seconds,
        labeled={split: getattr(args, f"{split}_utterances") for split in SynthConfig().labeled},
    )
    summary = synthesize(args.out, config, workers=args.workers)
    print(json.dumps(summary, indent=1))
    return 0
