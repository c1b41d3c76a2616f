"""The Slurm path of `prepare` (a site with `executor: slurm`): groups of units become the
tasks of one Slurm array (`speechfm.launch.array`); the driver waits for them, then the usual
merge writes the manifests. Units are built by the same `process_unit` as locally, so both paths
give identical shards and manifests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from speechfm.core.sites import PrepareSlurm
from speechfm.launch.array import run_array
from speechfm.prepare.config import PrepareConfig
from speechfm.prepare.discover import Unit
from speechfm.prepare.units import process_unit

LOG_DIR = "slurm"  # under the output folder: submitit's scripts, pickles and logs


def run_units(archive: Path, out: Path, units: list[Unit], config: PrepareConfig) -> int:
    """One array task: build its units in order; returns how many it built."""
    for unit in units:
        process_unit(archive, out, unit, config)
    return len(units)


def slurm_builder(site: PrepareSlurm) -> Callable[[Path, Path, list[Unit], PrepareConfig], None]:
    """A `build` function for `prepare` that runs units as a Slurm array. `site` is the site
    file's `prepare.slurm` section: `units_per_task` and `executor` (submitit SlurmExecutor
    parameters: partition, time, cpus_per_task, mem, array_parallelism, setup, ...)."""
    per_task = site.units_per_task

    def build(archive: Path, out_: Path, units: list[Unit], config: PrepareConfig) -> None:
        groups = [units[i:i + per_task] for i in range(0, len(units), per_task)]
        tasks = [(archive.resolve(), out_.resolve(), group, config) for group in groups]
        run_array(run_units, tasks, out_ / LOG_DIR, "speechfm-prepare", dict(site.executor),
                  describe=lambda i: ", ".join(u.key for u in groups[i]))

    return build
