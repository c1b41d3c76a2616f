"""Slurm: sbatch rendering from a site's `train:` section (`speechfm.core.sites`) and
submission. One `srun` step starts every rank of a job (`launch.ranks.Ranks`) as
`python -m speechfm.launch.rank RANKS.json`."""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from pathlib import Path

from speechfm.core.errors import SpeechfmError, require_tool
from speechfm.core.sites import Site, TrainSite
from speechfm.launch.netplugin import REQUIRE_ENV
from speechfm.launch.ranks import Ranks

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


def render_sbatch(job: Ranks, site: Site, workdir: Path) -> str:
    """The sbatch script that runs the ranks of `job` on `site`, each an srun task of
    `speechfm.launch.rank` (deterministic: golden-file tested)."""
    return render_script(job.name, job.out_dir, job.world_size,
                         ["-m", "speechfm.launch.rank", str(job.path)], site, workdir,
                         stopped=job.stopped)


def render_script(name: str, out_dir: Path, world_size: int, python_args: list[str], site: Site,
                  workdir: Path, stopped: Path | None = None) -> str:
    """One sbatch script: `world_size` ranks of `python PYTHON_ARGS` in one srun step (in the
    site's container), node set-up and clean-up around it. With `stopped` (the marker fairseq
    ranks write when a signal stopped them) the site's `signal` and `requeue` apply: the ranks
    checkpoint before the time limit and the job requeues itself; other commands (the
    transformers Trainer) get neither, a signal would only kill them early."""
    nodes, per_node = layout(site, world_size)
    train: TrainSite = site.train
    q = shlex.quote
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}"]
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
    if stopped is not None:  # ranks that checkpoint on a signal and say so (fairseq)
        if train.signal:  # sent to every rank before the time limit: checkpoint and stop
            lines.append(f"#SBATCH --signal={train.signal}")
        if train.requeue:
            lines.append("#SBATCH --requeue")
    lines += [f"#SBATCH --chdir={workdir}", f"#SBATCH --output={out_dir}/slurm-%j.out",
              "#SBATCH --open-mode=append", "", "set -euo pipefail", ""]
    env = dict(train.env)
    if train.require_net_plugin:  # each rank checks before training starts (launch.netplugin)
        env[REQUIRE_ENV] = "1"
    for key, value in env.items():
        lines.append(f'export {key}="{value}"')
    if env:
        lines.append("")
    per_node_step = "srun --ntasks=$SLURM_NNODES --ntasks-per-node=1"
    for command in train.node_setup:
        lines.append(f"{per_node_step} bash -c {q(command)}")

    # one failed rank ends the step: the others would wait in a collective until the time limit
    srun = ["srun", "--kill-on-bad-exit=1"]
    if train.cpu_bind:
        srun.append(f"--cpu-bind={train.cpu_bind}")
    if train.container is not None:
        srun += train.container.exec
        for bind in train.container.binds:
            srun += ["-B", q(bind)]
        for key, value in train.container.env.items():
            srun += ["--env", q(f"{key}={value}")]
        srun.append(q(train.container.image))
    srun += [q(train.python or sys.executable), *map(q, python_args)]
    lines += [" ".join(srun) + " && status=0 || status=$?"]
    for command in train.node_cleanup:
        lines.append(f"{per_node_step} bash -c {q(command)} || true")
    if train.requeue and stopped is not None:
        lines += [f"if [ \"$status\" = 0 ] && [ -f {q(str(stopped))} ]; then",
                  '    scontrol requeue "$SLURM_JOB_ID"  # resumes from checkpoint_last.pt', "fi"]
    lines.append('exit "$status"')
    return "\n".join(lines) + "\n"


def submit_script(script: Path, text: str, wait: bool = False) -> tuple[str, int]:
    """Write the sbatch script `text` to `script` and submit it; with `wait`, block until the job
    ended. Returns the Slurm job id and sbatch's exit status (the job's status when waiting)."""
    sbatch = require_tool("sbatch")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(text, encoding="utf-8")
    command = [sbatch, "--parsable", *(["--wait"] if wait else []), str(script)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    job_id = proc.stdout.strip().split(";")[0]
    if not job_id:
        raise SpeechfmError(f"sbatch failed: {proc.stderr.strip()}", path=script)
    log.info("submitted Slurm job %s (%s); output: %s/slurm-%s.out", job_id, script,
             script.parent, job_id)
    return job_id, proc.returncode
