"""The Slurm path: units become the tasks of a Slurm array submitted through submitit; the
driver waits for them, then the usual merge writes the manifests. Units are built by the same
`process_unit` as locally, so both paths give identical shards and manifests."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from speechfm.core.errors import SpeechfmError
from speechfm.core.sites import PrepareSlurm
from speechfm.prepare.config import PrepareConfig
from speechfm.prepare.discover import Unit
from speechfm.prepare.units import process_unit

log = logging.getLogger(__name__)

SUBMITIT_LOG_ENV = "SUBMITIT_LOG_LEVEL"
LOG_DIR = "slurm"  # under the output folder: submitit's scripts, pickles and logs


def run_units(archive: Path, out: Path, units: list[Unit], config: PrepareConfig) -> int:
    """One array task: build its units in order; returns how many it built."""
    for unit in units:
        process_unit(archive, out, unit, config)
    return len(units)


def _import_submitit():
    """submitit, logging through our handlers (stderr) instead of its own stdout handler, which
    would mix into the command's JSON summary; its per-poll sacct warnings (clusters without
    accounting) are kept out unless debugging."""
    saved = os.environ.get(SUBMITIT_LOG_ENV)
    os.environ[SUBMITIT_LOG_ENV] = "NOCONFIG"
    try:
        import submitit
    finally:  # the jobs inherit the environment: leave it as it was
        if saved is None:
            os.environ.pop(SUBMITIT_LOG_ENV)
        else:
            os.environ[SUBMITIT_LOG_ENV] = saved
    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("submitit").setLevel(logging.ERROR)
    return submitit


def slurm_builder(site: PrepareSlurm) -> Callable[[Path, Path, list[Unit], PrepareConfig], None]:
    """A `build` function for `prepare` that runs units as a Slurm array. `site` is the site
    file's `prepare.slurm` section: `units_per_task` and `executor` (submitit SlurmExecutor
    parameters: partition, time, cpus_per_task, mem, array_parallelism, setup, ...)."""
    per_task = site.units_per_task
    params = dict(site.executor)

    def build(archive: Path, out_: Path, units: list[Unit], config: PrepareConfig) -> None:
        submitit = _import_submitit()

        executor = submitit.SlurmExecutor(folder=out_ / LOG_DIR / "%j", max_num_timeout=0)
        executor.update_parameters(job_name="speechfm-prepare", **params)
        groups = [units[i:i + per_task] for i in range(0, len(units), per_task)]
        jobs = executor.map_array(run_units, [archive.resolve()] * len(groups),
                                  [out_.resolve()] * len(groups), groups,
                                  [config] * len(groups))
        log.info("submitted %d units as %d array tasks (job %s)", len(units), len(jobs),
                 jobs[0].job_id.split("_")[0] if jobs else "-")
        failed = []
        for job, group in zip(jobs, groups):
            try:
                job.result()
            except Exception as exc:  # noqa: BLE001 - one failed task must not hide the others
                failed.append(f"{job.job_id} ({', '.join(u.key for u in group)}): "
                              f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}")
        if failed:
            raise SpeechfmError(f"{len(failed)} Slurm tasks failed: {'; '.join(failed)}",
                                path=out_ / LOG_DIR,
                                hint="completed units are kept; run again to redo the rest")

    return build
