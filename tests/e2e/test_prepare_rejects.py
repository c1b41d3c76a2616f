"""Bad inputs: broken files land in rejects.jsonl with a reason while the rest completes."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_speechfm


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
