"""VAD quality of `speechfm prepare` against the demo archive's ground truth, per VAD mode:
frame-level speech recall/precision of the kept segments and the share of music-only, noise-only
and jingle time kept. The baseline is webrtcvad alone (the design's choice), at each aggressiveness.

    /work/main/.venv/bin/python benchmarks/vad_quality.py [--seconds 180] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}


def main() -> None:
    from speechfm.prepare.vadeval import evaluate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=180.0, help="length of each archive file")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "speechfm_bench")
    args = ap.parse_args()
    demo = args.data / f"demo_{int(args.seconds)}"
    py = sys.executable
    subprocess.run([py, "-m", "speechfm", "-q", "synth", "--out", str(demo), "--channels", "4",
                    "--days", "2", "--hours-per-day", "1", "--hour-seconds", str(args.seconds),
                    "--train-utterances", "1", "--valid-utterances", "1", "--test-utterances", "1"], check=True, env=ENV,
                   stdout=subprocess.DEVNULL)
    modes = {"silero (default)": ["--vad", "silero"]}
    modes |= {f"webrtc a={a}": ["--vad", "webrtc", "--webrtc-aggressiveness", str(a)] for a in range(4)}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, flags) in enumerate(modes.items()):
            out = Path(tmp) / str(i)
            subprocess.run([py, "-m", "speechfm", "-q", "prepare", str(demo / "archive"),
                            "--out", str(out), "--workers", "2", *flags], check=True, env=ENV,
                           stdout=subprocess.DEVNULL)
            results[name] = {k: round(v, 4) for k, v in evaluate(demo / "archive", out).items()}
            print(name, results[name], flush=True)
    best = results["silero (default)"]
    base = results["webrtc a=3"]
    results["ratios (webrtc a=3 / silero)"] = {
        k: round(base[k] / best[k], 2) if best[k] else None
        for k in ("music_kept", "noise_kept", "jingle_kept")}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
