"""The one way to start ranks: N processes of an explicit entry point, here or as one sbatch job.

Every verb that runs ranks (fairseq pre-training and CTC fine-tuning, the transformers Trainer)
describes them as `Ranks` (an entry point `module:function`, its JSON arguments, how many) and
calls `ranks(...)`. The site decides where they run (`Site.executor`, `speechfm.core.sites`):
`local` starts them as processes of this machine, `slurm` renders `job.sbatch` (one srun task
per rank) and submits it. Either way each rank is `python -m speechfm.launch.rank RANKS.json`,
which sets the rank's environment, makes the network-plugin check and calls the entry point.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speechfm.core.errors import SpeechfmError
from speechfm.core.sites import Site

log = logging.getLogger(__name__)

RANKS_NAME = "ranks.json"
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
KILL_GRACE_SECONDS = 20.0
"""How long the other ranks may keep running after one rank failed (they would wait forever in
a collective for the dead one)."""


@dataclass
class Ranks:
    """`world_size` ranks of `entry` (`module:function`, called as `function(**args)`, returning
    an exit status); `out_dir` holds this description, the sbatch script and Slurm's output."""

    name: str
    out_dir: Path
    entry: str
    args: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1
    cpu: bool = True
    stopped: Path | None = None
    """The marker the ranks write when a signal stopped them after a checkpoint: with it a Slurm
    site's `signal` (checkpoint before the time limit) and `requeue` apply."""

    @property
    def path(self) -> Path:
        return self.out_dir / RANKS_NAME

    def write(self) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        data = {**asdict(self), "out_dir": str(self.out_dir),
                "stopped": None if self.stopped is None else str(self.stopped)}
        self.path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return self.path


def read_ranks(path: Path) -> Ranks:
    """The `Ranks` written to `path` (one clear error for a missing or broken file)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        stopped = data.pop("stopped", None)
        return Ranks(**{**data, "out_dir": Path(data["out_dir"])},
                     stopped=None if stopped is None else Path(stopped))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise SpeechfmError(f"cannot read the ranks description: {exc}", path=Path(path)) from exc


@dataclass(frozen=True)
class Outcome:
    """How the ranks ended (exit status; a submitted job's status only when waited for)."""

    status: int
    job_id: str | None = None


def ranks(job: Ranks, site: Site, wait: bool = True, dry_run: bool = False) -> Outcome:
    """Run the ranks of `job` where `site` says; with `dry_run` only write the files (and the
    sbatch script on a Slurm site). Without `wait` a Slurm job is only submitted."""
    job.write()
    if site.executor == "slurm":
        from speechfm.launch.slurm import SCRIPT_NAME, render_sbatch, submit_script

        script = job.out_dir / SCRIPT_NAME
        text = render_sbatch(job, site, Path.cwd())
        if dry_run:
            script.write_text(text, encoding="utf-8")
            log.info("dry run: sbatch script written to %s", script)
            return Outcome(0)
        job_id, status = submit_script(script, text, wait=wait)
        return Outcome(status, job_id)
    if dry_run:
        log.info("dry run: start the ranks with python -m speechfm.launch.rank %s", job.path)
        return Outcome(0)
    return Outcome(run_here(job))


def no_gpu(site: Site) -> bool:
    """Whether ranks on `site` run on CPU: a Slurm site without GPU nodes, or here no GPU
    visible (the one rule of every verb that trains)."""
    if site.executor == "slurm":
        return not site.train.gpus_per_node
    import torch

    return not torch.cuda.is_available()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_here(job: Ranks) -> int:
    """Every rank of `job` as a process here; SIGTERM/SIGUSR1/SIGINT to this process reach each
    rank once. Returns the first non-zero exit status, else 0."""
    port = str(free_port())
    threads = str(max(1, (os.cpu_count() or 1) // job.world_size)) if job.cpu else "1"
    command = [sys.executable, "-m", "speechfm.launch.rank", str(job.path)]
    procs: list[subprocess.Popen] = []
    for rank in range(job.world_size):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(job.world_size),
               "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(job.world_size),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        env.setdefault("OMP_NUM_THREADS", threads)
        # own session: a Ctrl-C in the terminal reaches the ranks once, through this process
        procs.append(subprocess.Popen(command, env=env, start_new_session=True))
    log.info("started %d rank(s) of %s in %s", len(procs), job.entry, job.out_dir)

    def forward(signum: int, frame: object) -> None:
        log.warning("forwarding %s to %d rank(s)", signal.Signals(signum).name, len(procs))
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        return _wait(procs)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(procs: list[subprocess.Popen]) -> int:
    """Wait for every rank; once one fails the others get KILL_GRACE_SECONDS to end, then are
    killed. Returns the status of the first rank that failed (the cause, not the killed ones)."""
    first_failure: int | None = None
    failed_at = 0.0
    # poll every rank each time (`any` over poll() would stop at the first running one and never
    # see a later rank that died, leaving the others waiting in a collective for it forever)
    while [p.poll() for p in procs].count(None):
        codes = [p.returncode for p in procs if p.returncode not in (None, 0)]
        if codes and first_failure is None:
            first_failure, failed_at = codes[0], time.monotonic()
            log.error("a rank exited with status %d; stopping the others", first_failure)
        if first_failure is not None and time.monotonic() - failed_at > KILL_GRACE_SECONDS:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.2)
    if first_failure is not None:
        return first_failure
    codes = [p.returncode for p in procs if p.returncode != 0]
    return codes[0] if codes else 0
