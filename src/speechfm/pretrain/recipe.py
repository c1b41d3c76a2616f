"""The pre-training recipe: a typed `PretrainConfig` and `run(config)`, what `speechfm pretrain`
calls after parsing, and what tests and notebooks call in-process."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class PretrainConfig(BaseModel):
    """One pre-training run: which model (`preset`), on what (`manifest`), how long (`updates`),
    with how many ranks and where (`gpus`, `simulate_gpus`, `site`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest: Path
    """Folder with fairseq's train.tsv and valid.tsv (prepare's or dedup's manifests/)."""
    preset: str = "base"
    out: Path | None = None
    """Run folder (checkpoints, config.yaml, train.log); None: runs/pretrain-PRESET."""
    updates: int | None = None
    """Length in optimizer updates (None: the preset's); raising it resumes the run."""
    gpus: int = 1
    simulate_gpus: int | None = None
    """Effective batch of this many GPUs (update_freq = simulate_gpus / gpus; None: preset's)."""
    cpu: bool = False
    """Train on CPU (also when no GPU is visible here or the Slurm site has none)."""
    site: str = "local"
    wait: bool = False
    """Slurm: wait until the job ended."""
    dry_run: bool = False
    run_name: str | None = None
    tracking_uri: str | None = None
    experiment: str = "pretrain"
    overrides: list[str] = Field(default_factory=list)
    """fairseq `section.key=value` overrides and fast paths `fast.KEY=VALUE`."""

    @property
    def save_dir(self) -> Path:
        return (self.out or Path("runs") / f"pretrain-{Path(self.preset).stem}").resolve()


class Result(BaseModel):
    """What a run left: its exit status, the Slurm job id when submitted, where it wrote."""

    status: int
    save_dir: Path
    job_id: str | None = None


def run(config: PretrainConfig) -> Result:
    """Pre-train as `config` says: continue the run in `save_dir` if only its length changed,
    start the ranks where the site says, then write `curve.tsv` and `metrics.json`."""
    from speechfm.core.presets import load_pretrain
    from speechfm.core.sites import load_site
    from speechfm.core.tracking import tracking_uri
    from speechfm.engine.fairseq import FairseqJob, start, write_job
    from speechfm.engine.fairseq.fastpaths import split_overrides
    from speechfm.launch.ranks import no_gpu
    from speechfm.launch.resume import FAIRSEQ_LENGTH, fairseq_settings, settle_run
    from speechfm.pretrain.config import build_config, fast_settings

    site = load_site(config.site)
    cpu = config.cpu or no_gpu(site)
    preset = load_pretrain(config.preset)
    save_dir = config.save_dir
    overrides, fast_items = split_overrides(list(config.overrides))
    fast = fast_settings(preset, fast_items)
    settings = {"preset": preset, "manifest": config.manifest, "save_dir": save_dir,
                "gpus": config.gpus, "cpu": cpu, "simulate_gpus": config.simulate_gpus}
    fairseq = build_config(**settings, overrides=overrides, updates=config.updates)
    if not config.dry_run:  # continue the run in save_dir only if nothing but its length changed
        length_free = build_config(**settings, overrides=[*overrides, *FAIRSEQ_LENGTH])
        settle_run(save_dir, {"fairseq": fairseq_settings(length_free)},
                   has_checkpoint=(save_dir / "checkpoint_last.pt").exists())
    job = FairseqJob(save_dir=save_dir, world_size=config.gpus, cpu=cpu,
                     experiment=config.experiment, run_name=config.run_name or save_dir.name,
                     tracking_uri=tracking_uri(config.tracking_uri), stage="pretrain", fast=fast)
    write_job(job, fairseq)
    slurm = site.executor == "slurm"
    outcome = start(job, site, wait=config.wait or not slurm, dry_run=config.dry_run)
    if config.dry_run:
        return Result(status=0, save_dir=save_dir)
    if not slurm and outcome.status == 0 and job.stopped_path.exists():
        log.warning("stopped early (%s); run the same command again to resume",
                    job.stopped_path.read_text().strip())
    if outcome.status == 0 and (config.wait or not slurm):
        _write_curve(save_dir)
    return Result(status=outcome.status, save_dir=save_dir, job_id=outcome.job_id)


def _write_curve(save_dir: Path) -> None:
    """`curve.tsv` and `metrics.json` beside the checkpoints, for `dvc plots` / `dvc metrics`."""
    from speechfm.core.curves import fairseq_curve, write_curve

    if (save_dir / "train.log").exists():
        write_curve(fairseq_curve(save_dir / "train.log"), save_dir)


__all__ = ["PretrainConfig", "Result", "run"]
