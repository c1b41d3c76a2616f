"""The reference's step 1, done in parallel and with a record of failures: every media file to
16 kHz mono s16 FLAC, preserving the folder tree."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from speechfm.core.audio import summarize_errors
from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.errors import SpeechfmError, require_tool
from speechfm.prepare.discover import find_media

REJECTS_FILE = "rejects.jsonl"


def convert_one(src: Path, dst: Path) -> str | None:
    """Convert one file atomically (FLAC beside as `.part`, renamed when complete); the error or None."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    cmd = [require_tool("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-i", str(src), "-map", "0:a:0", "-vn", "-sn", "-dn", "-c:a", "flac",
           "-sample_fmt", "s16", "-ar", str(SAMPLE_RATE), "-ac", "1", "-threads", "1",
           "-f", "flac", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        return summarize_errors(proc.stderr) or f"ffmpeg exited with {proc.returncode}"
    os.replace(tmp, dst)
    return None


def convert(archive: Path, out: Path, workers: int = 2) -> dict[str, Any]:
    """Convert every media file under `archive` into `out` (same tree, `.flac`); existing outputs
    are kept. Failures go to OUT/rejects.jsonl."""
    if not archive.is_dir():
        raise SpeechfmError("archive folder not found", path=archive)
    sources = find_media(archive)
    jobs = [(src, out / src.relative_to(archive).with_suffix(".flac")) for src in sources]
    todo = [(s, d) for s, d in jobs if not d.exists()]
    rejects = []
    with ThreadPoolExecutor(max(1, workers)) as pool:  # each job is an ffmpeg process
        results = pool.map(lambda job: (job[0], convert_one(*job)), todo)
        for src, error in tqdm(results, total=len(todo), desc="convert", unit="file",
                               disable=None):
            if error:
                rel = src.relative_to(archive).as_posix()
                rejects.append({"source": rel, "reason": error})
                logging.getLogger(__name__).warning("%s: rejected: %s", rel, error)
    out.mkdir(parents=True, exist_ok=True)
    (out / REJECTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rejects),
                                    encoding="utf-8")
    return {"files": len(jobs), "converted": len(todo) - len(rejects), "kept": len(jobs) - len(todo),
            "rejects": rejects}
