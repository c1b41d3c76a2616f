"""Slurm: sbatch rendering from a site's `train:` section (`speechfm.core.sites`) and
submission. One `srun` step starts every rank of a fairseq job with `speechfm.launch.worker`."""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from pathlib import Path

from speechfm.core.errors import SpeechfmError, require_tool
from speechfm.core.sites import Site, TrainSite
from speechfm.launch.job import FairseqJob

log = logging.getLogger(__name__)

SCRIPT_NAME = "job.sbatch"


def layout(site: Site, world_size: int) -> tuple[int, int]:
    """(nodes, tasks per node) for `world_size` ranks: whole nodes once a job outgrows one."""
    train = site.train
    per_node = int(train.gpus_per_node or train.tasks_per_node or 1)
    if world_size <= per_node:
        return 1, world_size
    if world_size % per_node:
        raise SpeechfmError(f"{world_size} ranks do not fill whole nodes of {per_node} on site "
                            f"'{site.name}'", hint=f"use a multiple of {per_node}")
    return world_size // per_node, per_node


def render_sbatch(job: FairseqJob, site: Site, workdir: Path) -> str:
    """The sbatch script that runs `job` on `site` (deterministic: golden-file tested)."""
    nodes, per_node = layout(site, job.world_size)
    train: TrainSite = site.train
    q = shlex.quote
    lines = ["#!/bin/bash", f"#SBATCH --job-name=speechfm-{job.stage}-{job.save_dir.name}"]
    for option in ("partition", "account", "qos"):
        if getattr(train, option):
            lines.append(f"#SBATCH --{option}={getattr(train, option)}")
    lines += [f"#SBATCH --nodes={nodes}", f"#SBATCH --ntasks-per-node={per_node}"]
    if train.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={per_node}")
    lines.append(f"#SBATCH --cpus-per-task={train.cpus_per_task}")
    if train.mem:
        lines.append(f"#SBATCH --mem={train.mem}")
    if train.time:
        lines.append(f"#SBATCH --time={train.time}")
    if train.signal:  # sent to every rank before the time limit: checkpoint and stop
        lines.append(f"#SBATCH --signal={train.signal}")
    if train.requeue:
        lines.append("#SBATCH --requeue")
    lines += [f"#SBATCH --chdir={workdir}", f"#SBATCH --output={job.save_dir}/slurm-%j.out",
              "#SBATCH --open-mode=append", "", "set -euo pipefail", ""]
    for key, value in train.env.items():
        lines.append(f'export {key}="{value}"')
    if train.env:
        lines.append("")
    per_node_step = "srun --ntasks=$SLURM_NNODES --ntasks-per-node=1"
    for command in train.node_setup:
        lines.append(f"{per_node_step} bash -c {q(command)}")

    srun = ["srun"]
    if train.cpu_bind:
        srun.append(f"--cpu-bind={train.cpu_bind}")
    if train.container is not None:
        srun += train.container.exec
        for bind in train.container.binds:
            srun += ["-B", q(bind)]
        srun.append(q(train.container.image))
    srun += [q(train.python or sys.executable), "-m", "speechfm.launch.worker",
             q(str(job.job_path))]
    lines += [" ".join(srun) + " && status=0 || status=$?"]
    for command in train.node_cleanup:
        lines.append(f"{per_node_step} bash -c {q(command)} || true")
    if train.requeue:
        lines += [f"if [ \"$status\" = 0 ] && [ -f {q(str(job.stopped_path))} ]; then",
                  '    scontrol requeue "$SLURM_JOB_ID"  # resumes from checkpoint_last.pt', "fi"]
    lines.append('exit "$status"')
    return "\n".join(lines) + "\n"


def submit(job: FairseqJob, site: Site, wait: bool = False) -> tuple[str, int]:
    """Write `<save_dir>/job.sbatch` and submit it; with `wait`, block until the job ended.
    Returns the Slurm job id and sbatch's exit status (the job's status when waiting)."""
    sbatch = require_tool("sbatch")
    script = job.save_dir / SCRIPT_NAME
    script.write_text(render_sbatch(job, site, Path.cwd()), encoding="utf-8")
    command = [sbatch, "--parsable", *(["--wait"] if wait else []), str(script)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    job_id = proc.stdout.strip().split(";")[0]
    if not job_id:
        raise SpeechfmError(f"sbatch failed: {proc.stderr.strip()}", path=script)
    log.info("submitted Slurm job %s (%s); output: %s/slurm-%s.out", job_id, script,
             job.save_dir, job_id)
    return job_id, proc.returncode
