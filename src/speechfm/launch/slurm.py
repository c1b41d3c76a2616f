"""Slurm: site profiles (`pipelines/sites/<site>.yaml`, section `train:`), sbatch rendering and
submission. One `srun` step starts every rank of a fairseq job with `speechfm.launch.worker`."""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from speechfm.errors import SpeechfmError, require_tool
from speechfm.launch.job import FairseqJob
from speechfm.sites import site_file

log = logging.getLogger(__name__)

SCRIPT_NAME = "job.sbatch"


def load_site(name: str, section: str = "train") -> dict[str, Any]:
    """The `section` of a site file, by name (`lumi`) or path; it must say its `executor`."""
    import yaml

    path = site_file(name)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    settings = data.get(section)
    if not isinstance(settings, dict) or settings.get("executor") not in ("local", "slurm"):
        raise SpeechfmError(f"no '{section}:' section with 'executor: local|slurm'", path=path)
    return {**settings, "name": path.stem}


def layout(site: dict[str, Any], world_size: int) -> tuple[int, int]:
    """(nodes, tasks per node) for `world_size` ranks: whole nodes once a job outgrows one."""
    per_node = int(site.get("gpus_per_node") or site.get("tasks_per_node") or 1)
    if world_size <= per_node:
        return 1, world_size
    if world_size % per_node:
        raise SpeechfmError(f"{world_size} ranks do not fill whole nodes of {per_node} on site "
                            f"'{site['name']}'", hint=f"use a multiple of {per_node}")
    return world_size // per_node, per_node


def render_sbatch(job: FairseqJob, site: dict[str, Any], workdir: Path) -> str:
    """The sbatch script that runs `job` on `site` (deterministic: golden-file tested)."""
    nodes, per_node = layout(site, job.world_size)
    q = shlex.quote
    lines = ["#!/bin/bash", f"#SBATCH --job-name=speechfm-{job.stage}-{job.save_dir.name}"]
    for option in ("partition", "account", "qos"):
        if site.get(option):
            lines.append(f"#SBATCH --{option}={site[option]}")
    lines += [f"#SBATCH --nodes={nodes}", f"#SBATCH --ntasks-per-node={per_node}"]
    if site.get("gpus_per_node"):
        lines.append(f"#SBATCH --gpus-per-node={per_node}")
    lines.append(f"#SBATCH --cpus-per-task={site.get('cpus_per_task', 1)}")
    if site.get("mem"):
        lines.append(f"#SBATCH --mem={site['mem']}")
    if site.get("time"):
        lines.append(f"#SBATCH --time={site['time']}")
    if site.get("signal"):  # sent to every rank before the time limit: checkpoint and stop
        lines.append(f"#SBATCH --signal={site['signal']}")
    if site.get("requeue"):
        lines.append("#SBATCH --requeue")
    lines += [f"#SBATCH --chdir={workdir}", f"#SBATCH --output={job.save_dir}/slurm-%j.out",
              "#SBATCH --open-mode=append", "", "set -euo pipefail", ""]
    for key, value in (site.get("env") or {}).items():
        lines.append(f'export {key}="{value}"')
    if site.get("env"):
        lines.append("")
    per_node_step = "srun --ntasks=$SLURM_NNODES --ntasks-per-node=1"
    for command in site.get("node_setup") or []:
        lines.append(f"{per_node_step} bash -c {q(command)}")

    srun = ["srun"]
    if site.get("cpu_bind"):
        srun.append(f"--cpu-bind={site['cpu_bind']}")
    container = site.get("container") or {}
    if container:
        srun += list(container.get("exec", ["apptainer", "exec"]))
        for bind in container.get("binds") or []:
            srun += ["-B", q(str(bind))]
        srun.append(q(str(container["image"])))
    srun += [q(site.get("python") or sys.executable), "-m", "speechfm.launch.worker",
             q(str(job.job_path))]
    lines += [" ".join(srun) + " && status=0 || status=$?"]
    for command in site.get("node_cleanup") or []:
        lines.append(f"{per_node_step} bash -c {q(command)} || true")
    if site.get("requeue"):
        lines += [f"if [ \"$status\" = 0 ] && [ -f {q(str(job.stopped_path))} ]; then",
                  '    scontrol requeue "$SLURM_JOB_ID"  # resumes from checkpoint_last.pt', "fi"]
    lines.append('exit "$status"')
    return "\n".join(lines) + "\n"


def submit(job: FairseqJob, site: dict[str, Any], wait: bool = False) -> tuple[str, int]:
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
