"""fairseq 0.12 in one box: composing a job's full config (`job.py`), its ranks (`worker.py`),
the fixes for torch 2.13 (`fixes.py`), the exact fast paths (`fastpaths.py`, checked by
`fastcheck.py`), speechfm's fairseq tasks (`indexed_audio.py`, registered through the user dir
`plugin/speechfm_fairseq`, `userdir.py`) and the damaged-checkpoint fallback (`checkpoints.py`).

A job is started like any other ranks, through `speechfm.launch.ranks`: `start(job, site)`.
"""

from __future__ import annotations

from speechfm.core.sites import Site
from speechfm.engine.fairseq.job import FairseqJob, compose_config, read_job, write_job
from speechfm.launch.ranks import Outcome, Ranks, ranks

WORKER_ENTRY = "speechfm.engine.fairseq.worker:run"


def ranks_of(job: FairseqJob) -> Ranks:
    """The ranks of fairseq `job`: each runs `worker.run` on its job.json; they checkpoint and
    say so (`STOPPED`) when a signal stops them, so a Slurm site's signal and requeue apply."""
    return Ranks(name=f"speechfm-{job.stage}-{job.save_dir.name}", out_dir=job.save_dir,
                 entry=WORKER_ENTRY, args={"job": str(job.job_path)},
                 world_size=job.world_size, cpu=job.cpu, stopped=job.stopped_path)


def start(job: FairseqJob, site: Site | None = None, wait: bool = True,
          dry_run: bool = False) -> Outcome:
    """Run the ranks of `job` (written by `write_job`) where `site` says (default: here)."""
    return ranks(ranks_of(job), site or Site(), wait=wait, dry_run=dry_run)


__all__ = ["FairseqJob", "compose_config", "ranks_of", "read_job", "start", "write_job"]
