"""`speechfm pretrain`: wav2vec 2.0 pre-training with fairseq, here or under Slurm."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "pre-train a wav2vec 2.0 model with fairseq (preset tiny/base/large/xlarge)"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import add_gpus, add_set, add_tracking

    parser.add_argument("--preset", default="base",
                        help="tiny, base, large, xlarge or a preset YAML file (default: base)")
    parser.add_argument("--manifest", type=Path, required=True,
                        help="directory with fairseq train.tsv and valid.tsv (prepare's manifests/)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory: checkpoints, config.yaml, train.log "
                             "(default: runs/pretrain-PRESET)")
    add_gpus(parser)
    parser.add_argument("--simulate-gpus", type=int, default=None,
                        help="keep the effective batch of this many GPUs (update_freq = N / gpus; "
                             "default: the preset's reference, 512 for base/large/xlarge)")
    parser.add_argument("--cpu", action="store_true",
                        help="train on CPU (the default when no GPU is visible)")
    parser.add_argument("--site", default="local",
                        help="site profile in pipelines/sites/ (local, local-slurm, lumi) or a file")
    parser.add_argument("--executor", choices=("local", "slurm"), default=None,
                        help="where the ranks run (default: the site's executor)")
    parser.add_argument("--wait", action="store_true", help="slurm: wait until the job ended")
    parser.add_argument("--dry-run", action="store_true",
                        help="write config.yaml (and job.sbatch) but start nothing")
    parser.add_argument("--run-name", default=None, help="MLflow run name (default: --out's name)")
    add_tracking(parser, experiment="pretrain")
    add_set(parser, "optimization.max_update=20 (any fairseq config key), or a fast path, "
                    "fast.sdpa_attention=false (docs/pretrain.md)")
    parser.add_argument("old_overrides", nargs="*", metavar="KEY=VALUE", help=argparse.SUPPRESS)


def overrides_of(args: argparse.Namespace) -> list[str]:
    """fairseq `section.key=value` overrides: `--set` ones, then the deprecated positional ones."""
    from speechfm.core.cliargs import warn_deprecated

    if args.old_overrides:
        warn_deprecated("positional KEY=VALUE overrides", "--set KEY=VALUE")
    return [*args.overrides, *args.old_overrides]


def run(args: argparse.Namespace) -> int:
    from speechfm.core.errors import SpeechfmError
    from speechfm.core.presets import load_pretrain
    from speechfm.core.sites import load_site
    from speechfm.core.tracking import tracking_uri
    from speechfm.launch import FairseqJob, run_local, write_job
    from speechfm.launch.fastpaths import split_overrides
    from speechfm.launch.resume import FAIRSEQ_LENGTH, fairseq_settings, settle_run
    from speechfm.launch.slurm import render_sbatch, submit
    from speechfm.pretrain.config import build_config, fast_settings

    site = load_site(args.site)
    executor = args.executor or site.train.executor
    if executor == "slurm" and site.train.executor != "slurm":
        raise SpeechfmError(f"site '{site.name}' has no Slurm settings",
                            hint="use --site local-slurm, --site lumi or your own site file")
    cpu = args.cpu or _no_gpu(site if executor == "slurm" else None)
    preset = load_pretrain(args.preset)
    save_dir = (args.out or Path("runs") / f"pretrain-{Path(args.preset).stem}").resolve()
    overrides, fast_items = split_overrides(overrides_of(args))
    fast = fast_settings(preset, fast_items)
    config = build_config(preset, args.manifest, save_dir, args.gpus, cpu, args.simulate_gpus,
                          overrides)
    if not args.dry_run:  # continue the run in --out only if nothing but its length changed
        length_free = build_config(preset, args.manifest, save_dir, args.gpus, cpu,
                                   args.simulate_gpus, [*overrides, *FAIRSEQ_LENGTH])
        settle_run(save_dir, {"fairseq": fairseq_settings(length_free)},
                   has_checkpoint=(save_dir / "checkpoint_last.pt").exists())
    job = FairseqJob(save_dir=save_dir, world_size=args.gpus, cpu=cpu,
                     experiment=args.experiment, run_name=args.run_name or save_dir.name,
                     tracking_uri=tracking_uri(args.tracking_uri), stage="pretrain", fast=fast)
    write_job(job, config)
    if executor == "slurm":
        if args.dry_run:
            script = save_dir / "job.sbatch"
            script.write_text(render_sbatch(job, site, Path.cwd()), encoding="utf-8")
            log.info("dry run: sbatch script written to %s", script)
            return 0
        job_id, status = submit(job, site, wait=args.wait)
        print(job_id)
        if args.wait and status == 0:
            _write_curve(save_dir)
        return status
    if args.dry_run:
        log.info("dry run: start the job with python -m speechfm.launch.worker %s", job.job_path)
        return 0
    status = run_local(job)
    if status == 0 and job.stopped_path.exists():
        log.warning("stopped early (%s); run the same command again to resume",
                    job.stopped_path.read_text().strip())
    if status == 0:
        _write_curve(save_dir)
    return status


def _write_curve(save_dir: Path) -> None:
    """`curve.tsv` and `metrics.json` beside the checkpoints, for `dvc plots` / `dvc metrics`."""
    from speechfm.core.curves import fairseq_curve, write_curve

    if (save_dir / "train.log").exists():
        write_curve(fairseq_curve(save_dir / "train.log"), save_dir)


def _no_gpu(slurm_site) -> bool:
    """CPU unless GPUs are visible here (local) or the Slurm site has GPU nodes."""
    if slurm_site is not None:
        return not slurm_site.train.gpus_per_node
    import torch

    return not torch.cuda.is_available()
