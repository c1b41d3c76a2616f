"""The demo archive generator: layout, streams, ground truth against the audio, determinism."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechfm.core.constants import GROUND_TRUTH_SUFFIX
from speechfm.core.errors import SpeechfmError
from speechfm.synth import SynthConfig, synthesize
from speechfm.synth.text import load_sentences
from tests.helpers import SMALL_DEMO, require
from tests.helpers.files import tree_digest

LAYOUT = re.compile(r"^(?P<ch>[a-z0-9_]+)/(\d{4})/(\d{2})/(\d{2})/(?P=ch)_(\d{4})-(\d{4})\.ts$")


def archive_files(root: Path) -> list[Path]:
    return sorted((root / "archive").rglob("*.ts"))


def test_layout_matches_broadcast_archive(small_demo: Path) -> None:
    files = archive_files(small_demo)
    assert len(files) == 4 * 2 * 1
    rels = [f.relative_to(small_demo / "archive").as_posix() for f in files]
    for rel in rels:
        assert LAYOUT.match(rel), rel
    # the demo spans a month boundary: 2021-01-31 and 2021-02-01
    assert {r.split("/")[2] for r in rels} == {"01", "02"}
    for f in files:
        assert f.with_name(f.stem + GROUND_TRUTH_SUFFIX).exists()
    assert not list(small_demo.rglob("*.part"))


def ffprobe_streams(path: Path) -> list[dict]:
    out = subprocess.run(
        [require("ffprobe"), "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True, check=True, text=True,
    ).stdout
    return json.loads(out)["streams"]


def test_ffprobe_sees_declared_streams(small_demo: Path) -> None:
    seen_codecs, seen_rates, seen_layouts = set(), set(), set()
    for f in archive_files(small_demo):
        truth = json.loads(f.with_name(f.stem + GROUND_TRUTH_SUFFIX).read_text())
        ch = truth["channel"]
        streams = ffprobe_streams(f)
        audio = [s for s in streams if s["codec_type"] == "audio"]
        video = [s for s in streams if s["codec_type"] == "video"]
        assert len(audio) == 1
        assert audio[0]["codec_name"] == ch["codec"]
        assert int(audio[0]["sample_rate"]) == ch["sample_rate"]
        assert audio[0]["channels"] == ch["channels"]
        assert len(video) == (1 if ch["kind"] == "tv" else 0)
        seen_codecs.add(ch["codec"])
        seen_rates.add(ch["sample_rate"])
        seen_layouts.add(ch["channels"])
    assert seen_codecs == {"mp2", "aac"}
    assert seen_rates == {44_100, 48_000}
    assert seen_layouts == {1, 2}


def decode16k(path: Path) -> np.ndarray:
    pcm = subprocess.run(
        [require("ffmpeg"), "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", "16000",
         "-f", "s16le", "-"], capture_output=True, check=True,
    ).stdout
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


def test_ground_truth_matches_audio(small_demo: Path) -> None:
    sentences = set(load_sentences())
    kinds: set[str] = set()
    for f in archive_files(small_demo):
        truth = json.loads(f.with_name(f.stem + GROUND_TRUTH_SUFFIX).read_text())
        audio = decode16k(f)
        assert abs(audio.size / 16000 - truth["duration"]) < 0.2
        speech_rms, quiet_rms = [], []
        for iv in truth["intervals"]:
            kinds.add(iv["kind"] + ("+music" if iv.get("background") else ""))
            seg = audio[int(iv["start"] * 16000) : int(iv["end"] * 16000)]
            assert 0 <= iv["start"] < iv["end"] <= truth["duration"] + 1e-6
            if iv["kind"] == "speech":
                assert iv["text"] in sentences
                speech_rms.append(rms(seg))
            elif iv["kind"] == "silence":
                quiet_rms.append(rms(seg))
        assert speech_rms, f"{f} has no speech"
        # every declared sentence is audible: well above the broadcast noise floor
        assert min(speech_rms) > 0.01
        if quiet_rms:
            assert max(quiet_rms) < min(speech_rms) / 10
        # outside every declared interval there is only the noise floor or pauses (a margin of
        # 0.1 s allows for the codec's delay and the ms rounding of the boundaries)
        covered = np.zeros(audio.size, bool)
        for iv in truth["intervals"]:
            covered[max(0, int((iv["start"] - 0.1) * 16000)) : int((iv["end"] + 0.1) * 16000)] = True
        assert rms(audio[~covered]) < min(speech_rms) / 5
    assert {"speech", "music"} <= kinds


def _similarity(a: np.ndarray, b: np.ndarray, max_lag: int = 800) -> float:
    """Highest normalised correlation of two clips over lags up to `max_lag` samples (codecs
    delay the audio by a few hundred samples)."""
    from scipy.signal import correlate

    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    full = correlate(a, b, mode="full", method="fft")
    mid = n - 1
    return float(np.abs(full[mid - max_lag:mid + max_lag + 1]).max()
                 / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def test_repeats_are_the_same_sound_and_near_misses_are_not(small_demo: Path) -> None:
    """Occurrences of one item in two files are the same audio (through other gains, codecs and
    rates); a host's or bed's occurrences are not; the ground truth names a rerun."""
    from collections import defaultdict

    occurrences: dict[str, dict[str, list]] = {"repeats": defaultdict(list),
                                               "near_misses": defaultdict(list)}
    audio, chains, programme = {}, {}, {}
    for f in archive_files(small_demo):
        truth = json.loads(f.with_name(f.stem + GROUND_TRUTH_SUFFIX).read_text())
        audio[f], chains[f] = decode16k(f), (truth["channel"]["codec"],
                                             truth["channel"]["sample_rate"])
        programme[f] = next(r["id"] for r in truth["repeats"] if r["id"].startswith("programme"))
        for field, found in occurrences.items():
            for occ in truth[field]:
                found[occ["id"]].append((f, occ))
    repeated = {k: v for k, v in occurrences["repeats"].items() if len(v) >= 2}
    assert {k.split("-")[0] for k in repeated} >= {"ident", "programme"}
    across = set()
    for name, items in repeated.items():
        (f1, o1), (f2, o2) = items[0], items[1]
        seconds = min(o1["end"] - o1["start"], o2["end"] - o2["start"], 8.0)
        clips = [audio[f][int(o["start"] * 16000):int((o["start"] + seconds) * 16000)]
                 for f, o in ((f1, o1), (f2, o2))]
        assert _similarity(*clips) > 0.9, name
        if chains[f1] != chains[f2]:
            across.add(name.split("-")[0])
    assert "programme" in across  # the rerun went through another channel's chain
    compared = 0
    for name, items in occurrences["near_misses"].items():
        f1, o1 = items[0]
        # another programme: a rerun repeats the host's and the bed's sentences too
        others = [x for x in items if programme[x[0]] != programme[f1]]
        if not others:
            continue
        f2, o2 = others[0]
        compared += 1
        seconds = min(o1["end"] - o1["start"], o2["end"] - o2["start"])
        clips = [audio[f][int(o["start"] * 16000):int((o["start"] + seconds) * 16000)]
                 for f, o in ((f1, o1), (f2, o2))]
        assert _similarity(*clips) < 0.5, name
    assert compared >= 1


def test_programme_mixes_every_kind_of_sound() -> None:
    from datetime import date

    from speechfm.synth.archive import DEFAULT_CHANNELS, HourSpec, compose
    from speechfm.synth.repeats import Library
    from speechfm.synth.text import split_sentences

    spec = HourSpec(DEFAULT_CHANNELS[2], date(2021, 1, 31), 6, 240.0, seed=(0, 0, 0, 0))
    sentences = split_sentences(0, 10, 10, 10).archive
    library = Library.build(0, list(DEFAULT_CHANNELS), sentences)
    audio, truth = compose(spec, sentences, library)
    intervals = truth["intervals"]
    assert audio.size == 240 * spec.channel.sample_rate
    kinds = {iv["kind"] for iv in intervals}
    assert kinds == {"speech", "music", "noise", "jingle", "silence"}
    assert any(iv.get("background") == "music" for iv in intervals)  # speech over a music bed
    assert len({iv["voice"] for iv in intervals if iv["kind"] == "speech"}) > 3
    speech = sum(iv["end"] - iv["start"] for iv in intervals if iv["kind"] == "speech")
    assert 0.3 < speech / 240 < 0.8


def demo_rows(tsv: Path) -> list[dict]:
    """The demo's labeled TSV as written (path, seconds, voice, text), paths made absolute."""
    with tsv.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [row | {"path": str(tsv.parent / row["path"])} for row in rows]


def test_labeled_corpus_is_split_by_sentence(small_demo: Path) -> None:
    splits = {s: demo_rows(small_demo / "labeled" / f"{s}.tsv") for s in ("train", "valid", "test")}
    assert {s: len(r) for s, r in splits.items()} == SMALL_DEMO.labeled
    texts = {s: {r["text"] for r in rows} for s, rows in splits.items()}
    assert not texts["train"] & texts["test"]
    assert not texts["train"] & texts["valid"]
    assert not texts["valid"] & texts["test"]
    for rows in splits.values():
        for row in rows:
            info = sf.info(row["path"])
            assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
            assert abs(info.duration - float(row["seconds"])) < 1e-3
    # the unlabeled archive never speaks a valid or test sentence
    archive_text = set()
    for f in archive_files(small_demo):
        truth = json.loads(f.with_name(f.stem + GROUND_TRUTH_SUFFIX).read_text())
        archive_text |= {iv["text"] for iv in truth["intervals"] if iv["kind"] == "speech"}
    assert not archive_text & (texts["valid"] | texts["test"])


def test_other_seed_differs_and_settings_are_not_mixed(tmp_path: Path) -> None:
    tiny = {"channels": 1, "days": 1, "hours_per_day": 1, "hour_seconds": 6.0,
                "labeled": {"train": 1, "valid": 1, "test": 1}}
    synthesize(tmp_path / "a", SynthConfig(seed=1, **tiny), workers=1)
    synthesize(tmp_path / "b", SynthConfig(seed=2, **tiny), workers=1)
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "b")
    with pytest.raises(SpeechfmError, match="other settings"):
        synthesize(tmp_path / "a", SynthConfig(seed=2, **tiny), workers=1)
