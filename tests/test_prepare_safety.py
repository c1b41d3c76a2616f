"""Crash safety and bad inputs: SIGKILL mid-way then re-run gives the uninterrupted manifests and
clean tars; broken files land in rejects.jsonl with a reason while the rest completes."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_speechfm


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


def bodies(out: Path) -> dict[str, list[str]]:
    return {p.name: p.read_text().splitlines()[1:] for p in sorted((out / "manifests").glob("*.tsv"))}


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(small_demo: Path, tmp_path: Path) -> None:
    archive = small_demo / "archive"
    clean = tmp_path / "clean"
    assert run_speechfm("prepare", archive, "--out", clean, "--workers", "2").returncode == 0
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
    assert bodies(out) == bodies(clean)
    assert not list(out.rglob("*.part"))
    for shard in sorted(out.rglob("*.tar")):
        with tarfile.open(shard) as tar:
            names = [m.name for m in tar.getmembers()]
        assert len(names) == len(set(names)), f"duplicate members in {shard}"
        assert shard.read_bytes() == (clean / shard.relative_to(out)).read_bytes()
    assert run_speechfm("verify", out).returncode == 0


@pytest.mark.slow
def test_bad_inputs_are_recorded_and_the_rest_completes(small_demo: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    good = sorted((small_demo / "archive").rglob("*.ts"))[:2]
    for src in good:
        dst = archive / src.relative_to(small_demo / "archive")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    day = archive / "bad_tv" / "2021" / "01" / "31"
    day.mkdir(parents=True)
    (day / "zero.ts").write_bytes(b"")
    (day / "garbage.ts").write_bytes(random.Random(0).randbytes(50_000))
    data = good[0].read_bytes()
    (day / "truncated.ts").write_bytes(data[: len(data) // 3])
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=64x64:rate=5:duration=2", "-c:v", "mpeg2video", "-f", "mpegts",
                    str(day / "video_only.ts")], check=True)
    (day / "unreadable.ts").symlink_to(day / "gone.ts")
    proc = run_speechfm("prepare", archive, "--out", tmp_path / "out", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    rejects = {r["source"].split("/")[-1]: r for r in
               map(json.loads, (tmp_path / "out" / "rejects.jsonl").read_text().splitlines())}
    assert set(rejects) == {"zero.ts", "garbage.ts", "truncated.ts", "video_only.ts",
                            "unreadable.ts"}
    assert set(summary["rejected"]) == {r["source"] for r in rejects.values()}
    assert "Invalid data" in rejects["garbage.ts"]["reason"]
    assert "matches no streams" in rejects["video_only.ts"]["reason"]
    assert "No such file" in rejects["unreadable.ts"]["reason"]
    # a cut mid-frame shows as a decode error, a cut between frames as an incomplete packet
    assert any(w in rejects["truncated.ts"]["reason"] for w in ("truncated", "Invalid data"))
    assert rejects["truncated.ts"]["action"] == "kept-decoded-part"
    assert all(r["action"] == "skipped" for n, r in rejects.items() if n != "truncated.ts")
    train = (tmp_path / "out" / "manifests" / "train.tsv").read_text()
    for src in good:
        assert f"shards/{src.relative_to(small_demo / 'archive').parts[0]}/" in train
    assert "Invalid data" in proc.stderr  # the log names them too
