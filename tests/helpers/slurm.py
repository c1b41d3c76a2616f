"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd in a temp dir.

Nothing global is touched: the cluster's slurm.conf, state, spool, logs and munge socket live in
the folder given, clients find it through $SLURM_CONF, and `stop()` ends the daemons by PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers import free_port

SLURM_CONF = """\
ClusterName=speechfm-test
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_min_interval=0,batch_sched_delay=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=localhost CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""



class SlurmCluster:
    """Start with `start()`, use `env` for client commands (sbatch, squeue, srun), `stop()` after."""

    def __init__(self, root: Path, cpus: int = 2):
        self.root = Path(root).resolve()
        self.cpus = cpus
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment in which Slurm client commands talk to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60) -> SlurmCluster:
        for tool in ("munged", "slurmctld", "slurmd", "sbatch", "sinfo"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not installed: run 'make setup'")
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # munged runs as user munge: its folder must be reachable by it, so it lives directly
        # in /tmp rather than under the (root-only) pytest temp folder
        munge_dir = Path(tempfile.mkdtemp(prefix="speechfm-munge-"))
        self.munge_dir = munge_dir
        shutil.chown(munge_dir, "munge", "munge")
        munge_dir.chmod(0o755)  # munged wants its socket folder executable for all
        key = Path("/etc/munge/munge.key")
        if not key.exists():  # normally made by the Debian package; make a private one if not
            key = munge_dir / "munge.key"
            key.write_bytes(os.urandom(128))
            shutil.chown(key, "munge", "munge")
            key.chmod(0o600)
        socket_path = munge_dir / "munge.socket"
        self.procs["munged"] = subprocess.Popen(
            ["runuser", "-u", "munge", "--", "munged", "--foreground", f"--socket={socket_path}",
             f"--key-file={key}", f"--pid-file={munge_dir}/munged.pid",
             f"--log-file={munge_dir}/munged.log", f"--seed-file={munge_dir}/munged.seed"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait(lambda: socket_path.exists(), timeout, "munged socket")
        self.root.chmod(0o755)
        self.conf.write_text(SLURM_CONF.format(
            root=self.root, ctld_port=free_port(), slurmd_port=free_port(),
            munge_socket=socket_path, cpus=self.cpus,
        ))
        env = self.env
        self.procs["slurmctld"] = subprocess.Popen(
            ["slurmctld", "-D", "-i", "-f", str(self.conf)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.procs["slurmd"] = subprocess.Popen(
            ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait(self._node_idle, timeout, "slurm node to become idle")
        return self

    def _node_idle(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.root}")
        res = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=self.env,
                             capture_output=True, text=True, check=False)
        return res.returncode == 0 and res.stdout.strip() in ("idle", "mix", "alloc")

    @staticmethod
    def _wait(check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}")

    def sbatch(self, *args: str, cwd: Path | None = None) -> int:
        """Submit a batch job; returns its job id."""
        res = subprocess.run(["sbatch", "--parsable", *args], env=self.env, cwd=cwd,
                             capture_output=True, text=True, check=True)
        return int(res.stdout.strip().split(";")[0])

    def wait_job(self, job_id: int, timeout: float = 600) -> str:
        """Wait until the job has left the queue; returns its final state from scontrol."""
        def done() -> bool:
            res = subprocess.run(["squeue", "-h", "-j", str(job_id)], env=self.env,
                                 capture_output=True, text=True, check=False)
            return res.returncode != 0 or not res.stdout.strip()

        self._wait(done, timeout, f"job {job_id}")
        res = subprocess.run(["scontrol", "show", "job", str(job_id)], env=self.env,
                             capture_output=True, text=True, check=False)
        for token in res.stdout.split():
            if token.startswith("JobState="):
                return token.split("=", 1)[1]
        return "UNKNOWN"

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if getattr(self, "munge_dir", None) is not None:
            shutil.rmtree(self.munge_dir, ignore_errors=True)
