"""`speechfm pretrain`: wav2vec 2.0 pre-training with fairseq, here or under Slurm (the site
decides). Parsing only: the recipe is `speechfm.pretrain.recipe`."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "pre-train a wav2vec 2.0 model with fairseq (preset tiny/base/large/xlarge)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import add_gpus, add_set, add_site, add_tracking, add_updates

    parser.add_argument("--preset", default="base",
                        help="tiny, base, large, xlarge or a preset YAML file (default: base)")
    parser.add_argument("--manifest", type=Path, required=True,
                        help="directory with fairseq train.tsv and valid.tsv (prepare's manifests/)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory: checkpoints, config.yaml, train.log "
                             "(default: runs/pretrain-PRESET)")
    add_updates(parser)
    add_gpus(parser)
    parser.add_argument("--simulate-gpus", type=int, default=None,
                        help="keep the effective batch of this many GPUs (update_freq = N / gpus; "
                             "default: the preset's, 512 for base/large/xlarge)")
    parser.add_argument("--cpu", action="store_true",
                        help="train on CPU (the default when no GPU is visible)")
    add_site(parser)
    parser.add_argument("--wait", action="store_true", help="slurm: wait until the job ended")
    parser.add_argument("--dry-run", action="store_true",
                        help="write config.yaml (and job.sbatch) but start nothing")
    parser.add_argument("--run-name", default=None, help="MLflow run name (default: --out's name)")
    add_tracking(parser, experiment="pretrain")
    add_set(parser, "checkpoint.save_interval_updates=100 (any fairseq config key), or a fast "
                    "path, fast.sdpa_attention=false (docs/pretrain.md)")


def config_of(args: argparse.Namespace):
    """The recipe's `PretrainConfig` from parsed arguments."""
    from speechfm.pretrain.recipe import PretrainConfig

    return PretrainConfig(manifest=args.manifest, preset=args.preset, out=args.out,
                          updates=args.updates or None, gpus=args.gpus, simulate_gpus=args.simulate_gpus,
                          cpu=args.cpu, site=args.site, wait=args.wait, dry_run=args.dry_run,
                          run_name=args.run_name, tracking_uri=args.tracking_uri,
                          experiment=args.experiment, overrides=args.overrides)


def run(args: argparse.Namespace) -> int:
    from speechfm.pretrain import recipe

    result = recipe.run(config_of(args))
    if result.job_id is not None:
        print(result.job_id)
    return result.status
