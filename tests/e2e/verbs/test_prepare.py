"""`speechfm prepare` end to end beyond one local run: as a Slurm array on a real Slurm, and killed
twice (SIGKILL) then rerun, both ending in the uninterrupted run's manifests and shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_speechfm
from tests.helpers.prepared import manifest_bodies


@pytest.mark.slow
def test_slurm_array_gives_the_local_manifests(prepared: Path, small_demo: Path, tmp_path: Path,
                                               slurm_cluster) -> None:
    out = tmp_path / "slurm_out"
    site = ROOT / "pipelines" / "sites" / "local-slurm.yaml"
    proc = run_speechfm("prepare", small_demo / "archive", "--out", out, "--site",
                        site, env={"SLURM_CONF": slurm_cluster.env["SLURM_CONF"]})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["built"] == 8  # stdout holds only the summary
    assert manifest_bodies(out) == manifest_bodies(prepared)
    logs = list((out / "slurm").rglob("*_log.out"))
    assert len(logs) == 4  # 8 units, 2 per array task
    for shard in sorted(prepared.rglob("*.tar")):
        assert shard.read_bytes() == (out / shard.relative_to(prepared)).read_bytes()


def start_prepare(archive: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen([sys.executable, "-m", "speechfm", "prepare", str(archive), "--out",
                             str(out), "--workers", "2"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGKILL the prepare process (its workers die with it) as soon as `ready()` holds."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "prepare finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(prepared: Path, small_demo: Path,
                                                 tmp_path: Path) -> None:
    archive, clean = small_demo / "archive", prepared
    out = tmp_path / "killed"
    # 1st kill: while a shard is half written, before any unit is complete
    proc = start_prepare(archive, out)
    kill_when(proc, lambda: any(p.stat().st_size > 0 for p in out.rglob("*.tar.part")))
    assert not (out / "manifests").exists()
    # 2nd kill: after some units completed, others not
    proc = start_prepare(archive, out)
    kill_when(proc, lambda: 1 <= len(list(out.rglob("*.done.json"))))
    done_before = len(list(out.rglob("*.done.json")))
    assert done_before < 8
    time.sleep(0.5)  # workers must be gone: nothing may change after the kill
    assert len(list(out.rglob("*.done.json"))) == done_before
    proc = run_speechfm("prepare", archive, "--out", out, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["built"] == 8 - done_before
    assert manifest_bodies(out) == manifest_bodies(clean)
    assert not list(out.rglob("*.part"))
    for shard in sorted(out.rglob("*.tar")):
        with tarfile.open(shard) as tar:
            names = [m.name for m in tar.getmembers()]
        assert len(names) == len(set(names)), f"duplicate members in {shard}"
        assert shard.read_bytes() == (clean / shard.relative_to(out)).read_bytes()
    assert run_speechfm("verify", out).returncode == 0
