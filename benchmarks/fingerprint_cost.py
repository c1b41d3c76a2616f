"""What the fingerprints cost `speechfm prepare` in its default mode (silero VAD, 1 worker).

Two measurements on the same generated archive:
(a) in one process, the CPU time spent inside `speechfm.core.fingerprint.fingerprint` against the
    process's whole CPU time (ffmpeg's decoding, in child processes, added);
(b) whole runs with and without fingerprints (`--no-fingerprint`), interleaved, fastest of 3.

    /work/main/.venv/bin/python benchmarks/fingerprint_cost.py [--seconds 600] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}


def in_process(archive: Path, out: Path) -> dict[str, float]:
    """(a): prepare in this process with the fingerprint function timed."""
    from speechfm.prepare import units
    from speechfm.prepare.config import PrepareConfig
    from speechfm.prepare.pipeline import prepare

    spent = [0.0]
    original = units.fingerprint

    def timed(samples):
        t0 = time.process_time()
        try:
            return original(samples)
        finally:
            spent[0] += time.process_time() - t0

    units.fingerprint = timed
    own0 = time.process_time()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    prepare(archive, out, PrepareConfig(), workers=1)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (time.process_time() - own0 + kids1.ru_utime - kids0.ru_utime
             + kids1.ru_stime - kids0.ru_stime)
    return {"fingerprint_cpu_s": round(spent[0], 2), "prepare_cpu_s": round(total, 2),
            "share": round(spent[0] / total, 4)}


def whole_run(archive: Path, out: Path, *flags: str) -> float:
    """CPU seconds (children included) of one `speechfm prepare` run."""
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "speechfm", "-q", "prepare", str(archive), "--out",
                    str(out), "--workers", "1", *flags], check=True, env=ENV,
                   stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="length of each archive file")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "speechfm_bench")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    demo = args.data / f"demo_{int(args.seconds)}"
    subprocess.run([sys.executable, "-m", "speechfm", "-q", "synth", "--out", str(demo),
                    "--channels", "4", "--days", "2", "--hours-per-day", "1", "--hour-seconds",
                    str(args.seconds), "--train-utterances", "1", "--valid-utterances", "1", "--test-utterances", "1"],
                   check=True, env=ENV, stdout=subprocess.DEVNULL)
    archive = demo / "archive"
    work = args.data / "fingerprint_cost"
    shutil.rmtree(work, ignore_errors=True)
    result = {"audio_hours": round(8 * args.seconds / 3600, 3),
              "in_process": in_process(archive, work / "inproc")}
    print("in process", result["in_process"], flush=True)
    runs: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(args.rounds):
        runs["with"].append(whole_run(archive, work / "with"))
        runs["without"].append(whole_run(archive, work / "without", "--no-fingerprint"))
    best = {k: min(v) for k, v in runs.items()}
    result["whole_runs_cpu_s"] = {k: [round(x, 2) for x in v] for k, v in runs.items()}
    result["whole_runs_share"] = round((best["with"] - best["without"]) / best["with"], 4)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
