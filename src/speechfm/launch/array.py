"""A function over groups of items as the tasks of one Slurm array (through submitit): how
`prepare` builds its units on a Slurm site (`Site.executor`); the caller waits for every task."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from speechfm.core.errors import SpeechfmError

log = logging.getLogger(__name__)

SUBMITIT_LOG_ENV = "SUBMITIT_LOG_LEVEL"


def _import_submitit():
    """submitit, logging through our handlers (stderr) instead of its own stdout handler, which
    would mix into a command's JSON summary; its per-poll sacct warnings (clusters without
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


def run_array(function: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], folder: Path,
              name: str, params: dict[str, Any], describe: Callable[[int], str] = str) -> None:
    """Run `function(*task)` for every task as one Slurm array (`params`: submitit
    SlurmExecutor parameters from the site file) and wait for all of them; failed tasks are
    one error naming each (`describe(i)`: what task i held), after the others finished."""
    submitit = _import_submitit()
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=0)
    executor.update_parameters(job_name=name, **params)
    jobs = executor.map_array(function, *zip(*tasks)) if tasks else []
    log.info("submitted %d array tasks (job %s)", len(jobs),
             jobs[0].job_id.split("_")[0] if jobs else "-")
    failed = []
    for i, job in enumerate(jobs):
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 - one failed task must not hide the others
            text = str(exc).strip()
            failed.append(f"{job.job_id} ({describe(i)}): {text.splitlines()[-1] if text else exc}")
    if failed:
        raise SpeechfmError(f"{len(failed)} Slurm tasks failed: {'; '.join(failed)}", path=folder,
                            hint="completed work is kept; run again to redo the rest")
