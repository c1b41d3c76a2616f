"""`speechfm dedup` and the fingerprints under it, on a demo with repeated material: the same
groups on a second run, an archive without ground truth, the disabled stage, archives
prepared without fingerprints, robustness of the fingerprint to gain, codec, rate and offset,
and the search's cost growing linearly with the number of segments."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks.dedup_scale import write_dataset
from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.errors import SpeechfmError
from speechfm.core.fingerprint import FINGERPRINT_SUFFIX, fingerprint, read_sidecar
from speechfm.core.segment import read_index
from speechfm.dedup import DedupConfig, deduplicate
from speechfm.dedup.search import bucket_edges, star_groups
from tests.helpers import require, run_speechfm
from tests.helpers.files import lines


def test_second_run_gives_the_same_groups(dedup_prepared: Path, dedup_demo: Path,
                                          tmp_path: Path) -> None:
    first = deduplicate(dedup_prepared, tmp_path / "a", DedupConfig(), dedup_demo)
    second = deduplicate(dedup_prepared, tmp_path / "b", DedupConfig(), dedup_demo)
    for report in (first, second):
        report.pop("seconds")
    assert first == second
    assert (tmp_path / "a/manifests/train.tsv").read_bytes() == (
        tmp_path / "b/manifests/train.tsv").read_bytes()


def test_archive_without_ground_truth(dedup_prepared: Path, dedup_demo: Path,
                                      tmp_path: Path) -> None:
    bare = tmp_path / "archive"
    for ts in dedup_demo.rglob("*.ts"):
        (bare / ts.relative_to(dedup_demo)).parent.mkdir(parents=True, exist_ok=True)
        (bare / ts.relative_to(dedup_demo)).symlink_to(ts)
    report = deduplicate(dedup_prepared, tmp_path / "out", DedupConfig(), bare)
    with_truth = deduplicate(dedup_prepared, tmp_path / "out2", DedupConfig(), dedup_demo)
    assert "truth" not in report and "truth" in with_truth
    assert report["groups"] == with_truth["groups"] > 0
    assert report["hours_removed"] == with_truth["hours_removed"] > 0


def test_disabled_passes_the_manifests_through(dedup_prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "off"
    proc = run_speechfm("dedup", dedup_prepared, "--out", out, "--enabled", "false",
                        "--tracking-uri", "none")
    assert proc.returncode == 0, proc.stderr
    for tsv in (dedup_prepared / "manifests").glob("*.tsv"):
        assert (out / "manifests" / tsv.name).read_bytes() == tsv.read_bytes()
    report = json.loads((out / "report.json").read_text())
    assert report["enabled"] is False and report["removed_segments"] == 0


def test_archive_prepared_before_fingerprints(dedup_prepared: Path, dedup_demo: Path,
                                              tmp_path: Path) -> None:
    """As an archive prepared by an earlier speechfm: no sidecars, no 'fingerprint' setting."""
    old = tmp_path / "old"
    shutil.copytree(dedup_prepared, old)
    for sidecar in old.rglob(f"*{FINGERPRINT_SUFFIX}"):
        sidecar.unlink()
    for marker in old.rglob("*.done.json"):
        record = json.loads(marker.read_text())
        del record["config"]["fingerprint"]
        marker.write_text(json.dumps(record))
    proc = run_speechfm("dedup", old, "--out", tmp_path / "d", "--tracking-uri", "none")
    assert proc.returncode == 2
    assert "prepared without fingerprints" in proc.stderr and "dedup.enabled" in proc.stderr
    proc = run_speechfm("dedup", old, "--out", tmp_path / "d", "--enabled", "false",
                        "--tracking-uri", "none")
    assert proc.returncode == 0, proc.stderr
    # prepare sees those units as made without fingerprints: kept as they are with
    # --no-fingerprint, refused (not silently mixed) with the default
    proc = run_speechfm("prepare", dedup_demo, "--out", old, "--no-fingerprint")
    assert proc.returncode == 0 and json.loads(proc.stdout)["built"] == 0, proc.stderr
    proc = run_speechfm("prepare", dedup_demo, "--out", old)
    assert proc.returncode == 2 and "other settings" in proc.stderr


def test_a_missing_sidecar_is_named(dedup_prepared: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(dedup_prepared, damaged)
    victim = min(damaged.rglob(f"*{FINGERPRINT_SUFFIX}"))
    victim.unlink()
    with pytest.raises(SpeechfmError, match="no fingerprints beside this shard") as err:
        deduplicate(damaged, tmp_path / "out", DedupConfig())
    assert str(victim) in str(err.value)


def test_sidecars_hold_one_fingerprint_per_index_row(dedup_prepared: Path) -> None:
    indexes = sorted(dedup_prepared.rglob("*.index.jsonl"))
    assert indexes
    for index in indexes:
        segments = list(read_index(index))
        side = read_sidecar(index.with_name(index.name.replace(".index.jsonl",
                                                               FINGERPRINT_SUFFIX)))
        assert len(side) == len(segments)
        for row, seg in enumerate(segments):
            # one code per 64 ms, less the ~0.7 s the analysis windows need
            assert abs(len(side.codes_of(row)) - (seg.seconds - 0.69) / 0.064) < 2


def _through(audio: np.ndarray, rate: int, codec: str, tmp: Path) -> np.ndarray:
    """Float audio at `rate` through an MPEG-TS encode (mp2 or aac) and a 16 kHz decode."""
    ffmpeg = require("ffmpeg")
    ts = tmp / f"{codec}{rate}.ts"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "f32le", "-ar", str(rate), "-ac", "1",
                    "-i", "-", "-c:a", codec, "-b:a", "96k" if codec == "aac" else "192k",
                    "-f", "mpegts", str(ts)], input=audio.astype("<f4").tobytes(), check=True)
    pcm = subprocess.run([ffmpeg, "-v", "error", "-i", str(ts), "-ac", "1", "-ar", "16000",
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(pcm, dtype="<i2")


def _best_ber(a: np.ndarray, b: np.ndarray) -> float:
    best = 1.0
    for lag in range(-len(b) + 8, len(a) - 8):
        x, y = a[max(0, lag):], b[max(0, -lag):]
        n = min(len(x), len(y))
        best = min(best, float(np.bitwise_count(x[:n] ^ y[:n]).mean()) / 32)
    return best


def test_fingerprint_survives_gain_codec_rate_and_offset(tmp_path: Path) -> None:
    from speechfm.synth import sounds

    voice = sounds.Voice("m3", 160, 50)
    texts = ["Huomenna sataa lunta koko maassa.", "Kauppa on auki joka päivä kello yhdeksään."]

    def advert(rate: int, text: str, gain_db: float, lead: float) -> np.ndarray:
        speech = sounds.speak(text, voice, rate)
        bed = sounds.music(np.random.default_rng(4), 10.0, rate)[:len(speech)]  # one bed
        mix = (speech + bed * sounds.db(-14)) * sounds.db(gain_db)
        return np.concatenate([np.zeros(int(lead * rate), np.float32), mix.astype(np.float32)])

    a = fingerprint(_through(advert(48_000, texts[0], -2.0, 0.5), 48_000, "mp2", tmp_path))
    b = fingerprint(_through(advert(44_100, texts[0], -9.0, 0.737), 44_100, "aac", tmp_path))
    other = fingerprint(_through(advert(48_000, texts[1], -2.0, 0.5), 48_000, "mp2", tmp_path))
    assert _best_ber(a.codes, b.codes) < 0.15  # same advert: other gain, codec, rate, offset
    assert _best_ber(a.codes, other.codes) > 0.35  # same voice and bed, another sentence
    shared = np.intersect1d(a.keys, b.keys)
    assert len(shared) >= 2
    silent = fingerprint(np.zeros(5 * SAMPLE_RATE, dtype=np.int16))
    assert len(silent.codes) > 0 and len(silent.keys) == 0  # silence gives no keys to meet on


def test_buckets_pair_each_member_with_the_earliest_few() -> None:
    from speechfm.dedup.search import POSTING

    rec = np.zeros(7, POSTING)
    rec["key"] = [5, 5, 5, 5, 5, 9, 9]
    rec["seg"] = [4, 0, 3, 1, 2, 7, 6]
    rec["pos"] = [40, 0, 30, 10, 20, 5, 1]
    a, b, off = bucket_edges(rec, fanout=2)
    pairs = sorted(zip(a.tolist(), b.tolist(), off.tolist()))
    assert pairs == [(0, 1, 10), (0, 2, 20), (0, 3, 30), (0, 4, 40), (1, 2, 10), (1, 3, 20),
                     (1, 4, 30), (6, 7, 4)]


def test_groups_are_stars_around_the_earliest_member() -> None:
    # 1 and 3 copy 0; 2 copies 1 only (another part of it): not in 0's group, so it starts its own
    rep = star_groups(6, np.array([0, 1, 0, 2, 1]), np.array([1, 2, 3, 4, 4]))
    assert rep.tolist() == [0, 0, 2, 0, 2, -1]


def test_search_cost_grows_linearly(tmp_path: Path) -> None:
    """Twice the segments, twice the keys and compared pairs (not four times), and the planted
    copies removed and nothing else, at both sizes."""
    found = {}
    for n in (4000, 8000):
        planted = write_dataset(tmp_path / str(n), n, seed=n)
        report = deduplicate(tmp_path / str(n), tmp_path / f"out{n}", DedupConfig())
        before = set(lines(tmp_path / str(n) / "manifests/train.tsv")[1:])
        removed = before - set(lines(tmp_path / f"out{n}/manifests/train.tsv")[1:])
        expected = planted["expected_removed"]
        assert len(removed - expected) == 0
        assert len(removed & expected) >= 0.95 * len(expected)
        found[n] = report["search"]
    assert 1.6 < found[8000]["keys"] / found[4000]["keys"] < 2.4
    assert found[8000]["compared"] / found[4000]["compared"] < 2.6
