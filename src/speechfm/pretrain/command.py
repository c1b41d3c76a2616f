"""`speechfm pretrain`: wav2vec 2.0 pre-training with fairseq, here or under Slurm."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "pre-train a wav2vec 2.0 model with fairseq (preset tiny/base/large/xlarge)"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="base",
                        help="tiny, base, large, xlarge or a preset YAML file (default: base)")
    parser.add_argument("--manifest", type=Path, required=True,
                        help="directory with fairseq train.tsv and valid.tsv (prepare's manifests/)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory: checkpoints, config.yaml, train.log "
                             "(default: runs/pretrain-PRESET)")
    parser.add_argument("--gpus", type=int, default=1,
                        help="ranks: GPUs, or CPU processes with --cpu (default: 1)")
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
    parser.add_argument("--experiment", default="pretrain", help="MLflow experiment")
    parser.add_argument("--run-name", default=None, help="MLflow run name (default: --out's name)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="fairseq config overrides, e.g. optimization.max_update=20, and "
                             "fast-path switches, e.g. fast.sdpa_attention=false "
                             "(docs/pretrain.md)")


def run(args: argparse.Namespace) -> int:
    from speechfm.errors import SpeechfmError
    from speechfm.launch import FairseqJob, run_local, write_job
    from speechfm.launch.fastpaths import split_overrides
    from speechfm.launch.slurm import load_site, render_sbatch, submit
    from speechfm.pretrain.config import build_config, fast_settings, load_preset
    from speechfm.tracking import tracking_uri

    site = load_site(args.site)
    executor = args.executor or site["executor"]
    if executor == "slurm" and site["executor"] != "slurm":
        raise SpeechfmError(f"site '{site['name']}' has no Slurm settings",
                            hint="use --site local-slurm, --site lumi or your own site file")
    cpu = args.cpu or _no_gpu(site if executor == "slurm" else None)
    preset = load_preset(args.preset)
    save_dir = (args.out or Path("runs") / f"pretrain-{Path(args.preset).stem}").resolve()
    overrides, fast_items = split_overrides(args.overrides)
    fast = fast_settings(preset, fast_items)
    config = build_config(preset, args.manifest, save_dir, args.gpus, cpu, args.simulate_gpus,
                          overrides)
    job = FairseqJob(save_dir=save_dir, world_size=args.gpus, cpu=cpu,
                     experiment=args.experiment, run_name=args.run_name or save_dir.name,
                     tracking_uri=tracking_uri(args.tracking_uri), stage="pretrain", fast=fast)
    write_job(job, config)
    if (save_dir / "checkpoint_last.pt").exists():
        log.info("resuming from %s", save_dir / "checkpoint_last.pt")
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
    from speechfm.curves import fairseq_curve, write_curve

    if (save_dir / "train.log").exists():
        write_curve(fairseq_curve(save_dir / "train.log"), save_dir)


def _no_gpu(slurm_site: dict | None) -> bool:
    """CPU unless GPUs are visible here (local) or the Slurm site has GPU nodes."""
    if slurm_site is not None:
        return not slurm_site.get("gpus_per_node")
    import torch

    return not torch.cuda.is_available()
