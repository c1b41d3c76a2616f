"""Start the ranks of a fairseq job as processes on this machine and forward stop signals."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

from speechfm.launch.job import FairseqJob

log = logging.getLogger(__name__)

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
KILL_GRACE_SECONDS = 20.0
"""How long the other ranks may keep running after one rank failed (they would wait forever in
a collective for the dead one)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_command(job: FairseqJob) -> list[str]:
    return [sys.executable, "-m", "speechfm.launch.worker", str(job.job_path)]


def run_local(job: FairseqJob) -> int:
    """Run every rank of `job` here; SIGTERM/SIGUSR1/SIGINT to this process reach each rank once
    (each then saves a checkpoint and stops). Returns the first non-zero exit status, else 0."""
    port = str(free_port())
    threads = str(max(1, (os.cpu_count() or 1) // job.world_size)) if job.cpu else "1"
    procs: list[subprocess.Popen] = []
    for rank in range(job.world_size):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(job.world_size),
               "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        env.setdefault("OMP_NUM_THREADS", threads)
        # own session: a Ctrl-C in the terminal reaches the ranks once, through this process
        procs.append(subprocess.Popen(worker_command(job), env=env, start_new_session=True))
    log.info("started %d rank(s) of %s; log: %s", len(procs), job.save_dir, job.log_path)

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
    failed_at: float | None = None
    while any(p.poll() is None for p in procs):
        codes = [p.returncode for p in procs if p.returncode not in (None, 0)]
        if codes and failed_at is None:
            failed_at = time.monotonic()
            log.error("a rank exited with status %d; stopping the others", codes[0])
        if failed_at is not None and time.monotonic() - failed_at > KILL_GRACE_SECONDS:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.2)
    codes = [p.returncode for p in procs if p.returncode != 0]
    return codes[0] if codes else 0
