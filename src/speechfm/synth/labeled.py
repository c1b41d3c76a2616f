"""The labeled demo corpus: 16 kHz FLAC utterances with transcripts, split by sentence.

`labeled/<split>/<split>_NNNNN.flac` and `labeled/<split>.tsv` (columns: path relative to
`labeled/`, duration in seconds, voice, text). No sentence appears in two splits.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from speechfm.core.constants import SAMPLE_RATE
from speechfm.synth import sounds

TSV_FIELDS = ("path", "seconds", "voice", "text")


def make_utterance(text: str, seed: tuple[int, ...]) -> tuple[np.ndarray, sounds.Voice]:
    """One spoken sentence at 16 kHz with a little padding, level change and background noise."""
    rng = np.random.default_rng(seed)
    voice = sounds.Voice.sample(rng)
    speech = sounds.speak(text, voice, SAMPLE_RATE) * sounds.db(float(rng.uniform(-12, -1)))
    pad = [int(rng.uniform(0.1, 0.4) * SAMPLE_RATE) for _ in range(2)]
    audio = np.concatenate([np.zeros(pad[0], np.float32), speech, np.zeros(pad[1], np.float32)])
    snr_db = float(rng.uniform(25, 45))
    rms = float(np.sqrt(np.mean(speech**2))) or 1e-3
    audio = audio + rng.standard_normal(audio.size).astype(np.float32) * rms * sounds.db(-snr_db)
    return np.clip(audio, -1, 1), voice


SPLITS = ("train", "valid", "test")


def write_utterance(root: Path, split: str, index: int, text: str, seed: int) -> dict:
    """Write one utterance (kept if it exists) and return its TSV row."""
    rel = f"{split}/{split}_{index:05d}.flac"
    audio, voice = make_utterance(text, (seed, 11, SPLITS.index(split), index))
    path = root / rel
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        os.replace(tmp, path)
    return {"path": rel, "seconds": f"{audio.size / SAMPLE_RATE:.3f}", "voice": voice.name,
            "text": text}


def write_tsv(root: Path, split: str, rows: list[dict]) -> Path:
    tsv = root / f"{split}.tsv"
    tmp = tsv.with_name(tsv.name + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=TSV_FIELDS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, tsv)
    return tsv
