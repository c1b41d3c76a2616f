"""CLI verb `speechfm dedup`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

HELP = ("Find repeated content (adverts, jingles, reruns) by fingerprint and write training "
        "manifests without the copies.")

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import add_bool, add_tracking
    from speechfm.dedup.config import DedupConfig

    d = DedupConfig()
    p.add_argument("prepared", type=Path, help="prepare's output folder (shards/, manifests/)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for manifests/ (de-duplicated), report.json, report.png")
    p.add_argument("--archive", type=Path, default=None,
                   help="the archive; with ground truth beside its files (the demo) the report "
                        "scores the groups")
    add_bool(p, "--enabled", d.enabled, "false: copy the manifests unchanged (default true)")
    p.add_argument("--max-ber", type=float, default=d.max_ber, dest="max_ber",
                   help=f"bit error rate under which aligned audio matches (default {d.max_ber})")
    p.add_argument("--min-overlap", type=float, default=d.min_overlap, dest="min_overlap",
                   help="share of each of two segments that must match "
                        f"(default {d.min_overlap})")
    p.add_argument("--min-votes", type=int, default=d.min_votes, dest="min_votes",
                   help=f"shared keys before a pair is compared (default {d.min_votes})")
    p.add_argument("--keys-per-pass", type=int, default=d.keys_per_pass, dest="keys_per_pass",
                   help="keys sorted in memory at once, ~30 bytes each "
                        f"(default {d.keys_per_pass:,})")
    add_tracking(p, experiment="dedup")


def run(args: argparse.Namespace) -> int:
    from speechfm.dedup import REPORT_JSON, REPORT_PNG, deduplicate
    from speechfm.dedup.config import DedupConfig
    from speechfm.dedup.report import metrics

    config = DedupConfig(enabled=args.enabled, max_ber=args.max_ber,
                         min_overlap=args.min_overlap, min_votes=args.min_votes,
                         keys_per_pass=args.keys_per_pass)
    from speechfm.core.tracking import start_run

    report = deduplicate(args.prepared, args.out, config, args.archive)
    with start_run(args.experiment, run_name=args.out.name, params=config.to_dict(),
                   tags={"stage": "dedup"}, uri=args.tracking_uri) as run:
        run.log_metrics(metrics(report))
        for name in (REPORT_JSON, REPORT_PNG):
            run.log_artifact(args.out / name)
    print(json.dumps({k: v for k, v in report.items() if k not in ("examples", "settings")},
                     indent=1))
    return 0
