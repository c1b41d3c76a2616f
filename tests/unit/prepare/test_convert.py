"""`speechfm convert`: the reference's FLAC tree, made in parallel, failures recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import soundfile as sf

from tests.helpers import run_speechfm


def test_convert_keeps_tree_and_records_failures(small_demo: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    sources = sorted((small_demo / "archive").rglob("*.ts"))[:2]
    for src in sources:
        dst = archive / src.relative_to(small_demo / "archive")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    (archive / "bad" / "2021" / "01" / "01").mkdir(parents=True)
    (archive / "bad" / "2021" / "01" / "01" / "empty.ts").write_bytes(b"")
    proc = run_speechfm("convert", archive, "--out", tmp_path / "flac", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["converted"] == 2
    for src in sources:
        flac = tmp_path / "flac" / src.relative_to(small_demo / "archive").with_suffix(".flac")
        info = sf.info(flac)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.duration - 25.0) < 0.1
    rejects = [json.loads(x) for x in (tmp_path / "flac" / "rejects.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rejects] == ["bad/2021/01/01/empty.ts"]
    assert not list((tmp_path / "flac").rglob("*.part"))
    again = run_speechfm("convert", archive, "--out", tmp_path / "flac")
    assert json.loads(again.stdout)["kept"] == 2
