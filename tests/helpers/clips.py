"""Test helper: short FLAC clips (noise + tone) and a fairseq manifest over them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def audio_manifest(out: Path, seconds: list[float], seed: int = 0) -> Path:
    """FLAC clips of noise + tone of the given lengths and a fairseq manifest `train.tsv`."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = [str(out)]
    for i, length in enumerate(seconds):
        frames = int(length * 16000)
        t = np.arange(frames) / 16000
        audio = 0.1 * rng.standard_normal(frames) + 0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t)
        sf.write(out / f"c{i}.flac", audio.astype(np.float32), 16000, subtype="PCM_16")
        rows.append(f"c{i}.flac\t{frames}")
    (out / "train.tsv").write_text("\n".join(rows) + "\n")
    return out / "train.tsv"
