"""CLI verb `speechfm prepare`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

HELP = "Archive -> speech segments in tar shards -> fairseq manifests (resumable, parallel)."

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import add_site, add_workers

    p.add_argument("archive", type=Path, help="archive root (channel/YYYY/MM/DD/*.ts)")
    p.add_argument("--out", type=Path, required=True, help="output dataset folder")
    add_site(p)  # its 'prepare:' section sets the defaults of the options below
    add_workers(p, None, unset="the site's prepare.workers")
    p.add_argument("--unit", choices=("day", "month", "year"), default=None,
                   help="one shard group per channel x UNIT (default month)")
    p.add_argument("--vad", choices=("silero", "webrtc"), default=None,
                   help="silero (also rejects music and noise) or webrtc (fast) (default silero)")
    p.add_argument("--webrtc-aggressiveness", type=int, default=None,
                   help="webrtcvad aggressiveness 0-3 (default 3)")
    p.add_argument("--valid-hours", type=float, default=None,
                   help="validation hours per channel (default 2)")
    p.add_argument("--seed", type=int, default=None, help="seed of the validation draw (default 0)")
    p.add_argument("--no-fingerprint", dest="fingerprint", action="store_const", const=False,
                   default=None, help="no audio fingerprints (`speechfm dedup` needs them)")


def run(args: argparse.Namespace) -> int:
    from speechfm.core.sites import load_site
    from speechfm.prepare.config import PrepareConfig
    from speechfm.prepare.pipeline import prepare

    whole = load_site(args.site)
    site = whole.prepare
    settings = dict(site.config)
    for key in ("unit", "vad", "webrtc_aggressiveness", "valid_hours", "seed", "fingerprint"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    config = PrepareConfig.from_dict(settings, source=args.site)
    workers = args.workers or site.workers
    build = None
    if whole.executor == "slurm":  # the site decides, as for every verb
        from speechfm.prepare.slurm import slurm_builder

        build = slurm_builder(site.slurm)
    summary = prepare(args.archive, args.out, config, workers=workers, build=build)
    _vad_quality(args.archive, args.out)
    _summary(args.out)
    for r in summary["rejects"]:
        log.warning("rejected %s (%s): %s", r["source"], r["action"], r["reason"])
    print(json.dumps({k: v for k, v in summary.items() if k != "rejects"}
                     | {"rejected": [r["source"] for r in summary["rejects"]]}, indent=1))
    return 0


def _summary(out: Path) -> None:
    """OUT/summary.json, prepare's headline DVC metric: hours kept and the VAD's precision and
    recall against the ground truth (absent without one); stats.json and vad_quality.json keep
    the detail."""
    from speechfm.core.curves import write_summary
    from speechfm.prepare.vadeval import QUALITY_FILE

    total = json.loads((out / "stats.json").read_text(encoding="utf-8"))["total"]
    quality = json.loads((out / QUALITY_FILE).read_text(encoding="utf-8"))
    write_summary(out, {"hours_kept": total.get("hours_kept", 0.0),
                        "precision": quality.get("speech_precision"),
                        "recall": quality.get("speech_recall")})


def _vad_quality(archive: Path, out: Path) -> None:
    """Score the VAD where ground truth lies beside the sources (the demo archive) into
    OUT/vad_quality.json; any other archive gets the file too, saying `"ground_truth": false`.
    Runs after the merge: the shards and manifests are complete whatever happens here."""
    from speechfm.prepare.vadeval import write_quality

    quality = write_quality(archive, out)
    if quality["ground_truth"]:
        log.info("VAD quality against the ground truth: %s", quality)
    else:
        log.info("no ground truth beside the archive's files: VAD quality not scored")
