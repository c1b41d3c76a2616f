"""`speechfm prepare` / `verify` on the small demo: layout, manifests read as fairseq reads them,
the split, statistics, VAD quality against ground truth, corruption found by verify."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.errors import SpeechfmError
from speechfm.core.manifest import read_manifest
from speechfm.core.segment import read_index
from speechfm.core.vad import cut
from speechfm.prepare.config import PrepareConfig
from speechfm.prepare.discover import plan_units, unit_of
from speechfm.prepare.manifests import split_valid
from speechfm.prepare.pipeline import prepare
from speechfm.prepare.vadeval import evaluate
from tests.helpers import run_speechfm
from tests.helpers.merge_reference import reference_merge
from tests.helpers.prepared import manifest_bodies, prepare_cli


def test_layout_and_manifests_read_like_fairseq(prepared: Path) -> None:
    segments = {}
    for idx in sorted((prepared / "shards").rglob("*.index.jsonl")):
        shard = idx.with_name(idx.name.removesuffix(".index.jsonl"))
        assert shard.exists()
        with tarfile.open(shard) as tar:
            members = {m.name: m for m in tar.getmembers()}
        for seg in read_index(idx):
            assert seg.shard == shard.relative_to(prepared).as_posix()
            assert members[seg.member].offset_data == seg.offset
            assert members[seg.member].size == seg.size
            segments[seg.manifest_path] = seg
    assert not list(prepared.rglob("*.part"))
    train_root, train = read_manifest(prepared / "manifests" / "train.tsv")
    valid_root, valid = read_manifest(prepared / "manifests" / "valid.tsv")
    assert train_root == valid_root == prepared.resolve()
    rows = [f"{s}:{o}:{n}" for s, o, n, _ in train + valid]
    assert sorted(rows) == sorted(segments) and len(set(rows)) == len(rows)
    for shard, offset, size, frames in train + valid:
        with open(train_root / shard, "rb") as f:  # as FileAudioDataset: mmap slice of the tar
            f.seek(offset)
            audio, rate = sf.read(io.BytesIO(f.read(size)), dtype="int16")
        assert rate == SAMPLE_RATE and len(audio) == frames
        assert 2 * SAMPLE_RATE <= frames <= 30 * SAMPLE_RATE
    channels = {seg.channel for seg in segments.values()}
    per_channel = []
    for ch in channels:
        _, rows_ch = read_manifest(prepared / "manifests" / f"valid_{ch}.tsv")
        assert rows_ch, f"no validation rows for {ch}"
        assert all(r[0].startswith(f"shards/{ch}/") for r in rows_ch)
        per_channel += rows_ch
    assert sorted(per_channel) == sorted(valid)


def test_stats_report(prepared: Path) -> None:
    stats = json.loads((prepared / "stats.json").read_text())
    assert stats["total"]["files"] == 8
    assert 0 < stats["total"]["hours_kept"] < stats["total"]["hours_in"]
    assert abs(stats["total"]["hours_in"] - 8 * 25 / 3600) < 1e-3
    assert set(stats["per_channel_year"]) == {f"{c}/2021" for c in stats["per_channel"]}
    assert sum(stats["segment_seconds"]["counts"]) == stats["total"]["segments"]
    assert (prepared / "stats.png").stat().st_size > 1000


def test_default_vad_rejects_music_and_noise(prepared: Path, small_demo: Path,
                                            tmp_path: Path) -> None:
    default = evaluate(small_demo / "archive", prepared)
    assert default["speech_recall"] >= 0.95
    assert default["music_kept"] <= 0.10 and default["noise_kept"] <= 0.10
    prepare_cli(small_demo / "archive", tmp_path / "webrtc", "--vad", "webrtc", "--workers", "2")
    fast = evaluate(small_demo / "archive", tmp_path / "webrtc")
    assert fast["speech_recall"] >= 0.9
    assert fast["music_kept"] > 3 * default["music_kept"]  # why webrtc is not the default


def test_vad_quality_is_written_for_every_archive_and_odd_ground_truth_is_skipped(
        prepared: Path, small_demo: Path, tmp_path: Path) -> None:
    """Ground truth of another schema or broken JSON beside the files: prepare finishes (no
    `KeyError: 'duration'` after every unit was built), warns naming each such file, scores
    with the rest; with none usable the metric says so."""
    quality = json.loads((prepared / "vad_quality.json").read_text())
    assert quality["ground_truth"] is True and quality["truth_files"] == 8
    stats = json.loads((prepared / "stats.json").read_text())["total"]
    assert json.loads((prepared / "summary.json").read_text()) == {  # the headline DVC metric
        "hours_kept": round(stats["hours_kept"], 4),
        "precision": round(quality["speech_precision"], 4),
        "recall": round(quality["speech_recall"], 4)}
    archive, out = tmp_path / "archive", tmp_path / "out"
    shutil.copytree(small_demo / "archive", archive)
    shutil.copytree(prepared, out)  # the same units, already built
    truths = sorted(archive.rglob("*.truth.json"))
    truths[0].write_text('{"file": "x.ts", "segments": []}')  # another schema
    truths[1].write_text('{"file": "x.ts", "dur')  # cut short
    result = run_speechfm("prepare", archive, "--out", out, "--workers", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["built"] == 0
    for bad in truths[:2]:
        assert f"{bad}: skipped for VAD quality" in result.stderr
    quality = json.loads((out / "vad_quality.json").read_text())
    assert quality["truth_files"] == 6 and quality["truth_files_skipped"] == 2
    assert quality["speech_recall"] >= 0.9
    for truth in truths:
        truth.unlink()
    (archive / "notes.truth.json").write_text("[1, 2]")
    result = run_speechfm("prepare", archive, "--out", out, "--workers", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "vad_quality.json").read_text()) == {
        "ground_truth": False, "truth_files": 0, "truth_files_skipped": 1}
    assert set(json.loads((out / "summary.json").read_text())) == {"hours_kept"}


def test_inventory_lists_every_file_without_reading_it(small_demo: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(small_demo / "archive", archive)
    (archive / ".hidden").mkdir()
    (archive / ".hidden" / "x.ts").write_bytes(b"")
    out = tmp_path / "inventory.tsv"
    result = run_speechfm("inventory", archive, "--out", out)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rows[0] == ["path", "bytes", "mtime_ns"]
    files = sorted(p for p in archive.rglob("*") if p.is_file() and ".hidden" not in p.parts)
    assert [r[0] for r in rows[1:]] == [p.relative_to(archive).as_posix() for p in files]
    assert all(int(r[1]) == (archive / r[0]).stat().st_size for r in rows[1:])
    before = out.stat().st_mtime_ns
    assert run_speechfm("inventory", archive, "--out", out).returncode == 0
    assert out.stat().st_mtime_ns == before  # unchanged archive: the file is left as it is
    first = archive / rows[1][0]
    first.write_bytes(first.read_bytes() + b"\0")
    assert run_speechfm("inventory", archive, "--out", out).returncode == 0
    assert out.read_text().splitlines()[1].split("\t")[1] == str(int(rows[1][1]) + 1)
    missing = run_speechfm("inventory", tmp_path / "nowhere", "--out", out)
    assert missing.returncode == 2 and "archive folder not found" in missing.stderr


def test_rerun_builds_nothing_and_changes_nothing(prepared: Path, small_demo: Path) -> None:
    before = manifest_bodies(prepared)
    summary = prepare_cli(small_demo / "archive", prepared, "--workers", "2")
    assert summary["built"] == 0
    assert manifest_bodies(prepared) == before


def test_other_unit_settings_are_refused_split_settings_only_remerge(
        prepared: Path, small_demo: Path, tmp_path: Path) -> None:
    before = manifest_bodies(prepared)
    proc = run_speechfm("prepare", small_demo / "archive", "--out", prepared, "--vad", "webrtc")
    assert proc.returncode == 2 and "other settings" in proc.stderr
    assert manifest_bodies(prepared) == before
    out = tmp_path / "copy"
    shutil.copytree(prepared, out)
    summary = prepare_cli(small_demo / "archive", out, "--seed", "7")
    assert summary["built"] == 0
    after = manifest_bodies(out)
    assert after["valid.tsv"] != before["valid.tsv"]
    assert sorted(after["train.tsv"] + after["valid.tsv"]) == sorted(
        before["train.tsv"] + before["valid.tsv"])


def test_verify_names_the_corrupted_entry(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(prepared, out)
    (out / "manifests").joinpath("train.tsv").write_text(  # root of the copy
        "\n".join([str(out.resolve())] + manifest_bodies(out)["train.tsv"]) + "\n")
    for name in list(manifest_bodies(out)):
        if name != "train.tsv":
            (out / "manifests" / name).unlink()
    proc = run_speechfm("verify", out)
    assert proc.returncode == 0, proc.stdout
    _, rows = read_manifest(out / "manifests" / "train.tsv")
    shard, offset, size, _ = rows[0]
    data = bytearray((out / shard).read_bytes())
    data[offset + size // 2] ^= 0xFF
    (out / shard).write_bytes(bytes(data))
    last_shard, last_offset, _, _ = rows[-1]
    with open(out / last_shard, "r+b") as f:
        f.truncate(last_offset + 10)
    proc = run_speechfm("verify", out)
    assert proc.returncode == 1
    assert f"train.tsv:2 ({shard}:{offset}:{size}): checksum mismatch" in proc.stdout
    assert f"train.tsv:{len(rows) + 1} ({rows[-1][0]}:{last_offset}" in proc.stdout
    assert "shard ends after" in proc.stdout


def test_cut_into_30s_pieces_and_drop_short() -> None:
    config = PrepareConfig()
    s = SAMPLE_RATE
    pieces, dropped = cut([(0, 61 * s), (70 * s, 71 * s), (80 * s, 83 * s)], config)
    assert pieces == [(0, 30 * s), (30 * s, 60 * s), (80 * s, 83 * s)]
    assert dropped == 2 * s


def test_units_by_period(tmp_path: Path) -> None:
    rel = Path("yle_tv1/2021/01/31/yle_tv1_0600-0700.ts")
    assert unit_of(rel, "day") == ("yle_tv1", "2021-01-31")
    assert unit_of(rel, "month") == ("yle_tv1", "2021-01")
    assert unit_of(rel, "year") == ("yle_tv1", "2021")
    assert unit_of(Path("radio/misc/a.mp3"), "month") == ("radio", "undated")
    for p in (rel, Path("radio/misc/a.mp3"), Path("radio/misc/a.truth.json")):
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes(b"x")
    assert [u.key for u in plan_units(tmp_path, "month")] == ["radio/undated", "yle_tv1/2021-01"]


def test_valid_split_is_by_source_file_and_equals_the_in_memory_reference(
        prepared: Path, small_demo: Path) -> None:
    """No broadcast hour on both sides; the streaming merge writes, byte for byte, what a plain
    in-memory implementation of the same rules writes (statistics as before the split change)."""
    source_of = {seg.manifest_path: seg.source for idx in (prepared / "shards").rglob(
        "*.index.jsonl") for seg in read_index(idx)}
    sides = {}
    for name in ("train", "valid"):
        _, rows = read_manifest(prepared / "manifests" / f"{name}.tsv")
        sides[name] = {source_of[f"{s}:{o}:{n}"] for s, o, n, _ in rows}
    assert sides["train"] and sides["valid"] and not sides["train"] & sides["valid"]
    config = PrepareConfig()
    expected = reference_merge(prepared, plan_units(small_demo / "archive", "month"), config)
    assert {k for k in expected if k.startswith("manifests/")} == {
        p.relative_to(prepared).as_posix() for p in (prepared / "manifests").glob("*.tsv")}
    for name, data in expected.items():
        assert (prepared / name).read_bytes() == data, name


def test_indexed_dataset_returns_what_file_audio_dataset_returns(prepared: Path) -> None:
    """Every entry of every demo manifest: the same tensors, sizes, order and batches; and the
    index prepare wrote is the one built from the manifest's text."""
    from fairseq.data import FileAudioDataset

    from speechfm.core.segment_index import build_index, index_dir
    from speechfm.engine.fairseq.indexed_audio import IndexedAudioDataset

    manifests = sorted((prepared / "manifests").glob("*.tsv"))
    assert len(manifests) == 6
    for tsv in manifests:
        written = {p.name: p.read_bytes() for p in index_dir(tsv).iterdir()}
        build_index(tsv)
        assert {p.name: p.read_bytes() for p in index_dir(tsv).iterdir()} == written
        for kw in ({}, {"normalize": True, "pad": True, "max_sample_size": 48000}):
            ours = IndexedAudioDataset(str(tsv), SAMPLE_RATE, **kw)
            theirs = FileAudioDataset(str(tsv), SAMPLE_RATE, **kw)
            assert len(ours) == len(theirs) > 0
            assert np.array_equal(ours.sizes, theirs.sizes)
            for i in range(len(theirs)):
                a, b = ours[i], theirs[i]
                assert a["id"] == b["id"] and a["source"].dtype == b["source"].dtype
                assert np.array_equal(a["source"].numpy(), b["source"].numpy())
            np.random.seed(3)
            order = theirs.ordered_indices()
            np.random.seed(3)
            assert np.array_equal(ours.ordered_indices(), order)
            batches = ours.batch_by_size(order, max_tokens=400_000)
            assert [b.tolist() for b in batches] == [
                b.tolist() for b in theirs.batch_by_size(order, max_tokens=400_000)]


def test_split_is_seeded_per_channel_and_by_hours() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    channels = np.where(rng.random(n) < 0.5, "a", "b")
    frames = rng.integers(2 * SAMPLE_RATE, 30 * SAMPLE_RATE, n)
    mask = split_valid(channels, frames, 2.0, 0.5, seed=1)
    assert np.array_equal(mask, split_valid(channels, frames, 2.0, 0.5, seed=1))
    assert not np.array_equal(mask, split_valid(channels, frames, 2.0, 0.5, seed=2))
    for ch in "ab":
        hours = frames[mask & (channels == ch)].sum() / SAMPLE_RATE / 3600
        assert 2.0 <= hours < 2.0 + 30 / 3600
    small = split_valid(np.array(["a"] * 10), np.full(10, SAMPLE_RATE * 10), 2.0, 0.1, seed=0)
    assert small.sum() == 1  # a share of small data, never the whole channel


def test_bad_settings_and_output_path(small_demo: Path, tmp_path: Path) -> None:
    with pytest.raises(SpeechfmError, match="unknown prepare settings"):
        PrepareConfig.from_dict({"vad_mode": "x"})
    with pytest.raises(SpeechfmError, match="':'"):
        prepare(small_demo / "archive", tmp_path / "a:b", PrepareConfig())


def test_size_cap_splits_a_unit_into_several_shards(prepared: Path, small_demo: Path,
                                                   tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(small_demo / "archive", archive)
    config = PrepareConfig(unit="year", shard_max_bytes=150_000)
    summary = prepare(archive, tmp_path / "out", config)
    shards = sorted((tmp_path / "out" / "shards").rglob("*.tar"))
    assert any(s.name == "2021_1.tar" for s in shards) and len(shards) > 4
    assert all(s.stat().st_size <= 150_000 + 512 * 1024 for s in shards)  # one member may overflow
    from speechfm.prepare.verify import verify

    checked, problems = verify(tmp_path / "out")
    assert problems == [] and checked == summary["segments"] + summary["manifests"]["valid"]
    before = manifest_bodies(prepared)  # as many segments as the month units, in other shards
    after = manifest_bodies(tmp_path / "out")
    assert len(after["train.tsv"]) + len(after["valid.tsv"]) == summary["segments"] == (
        len(before["train.tsv"]) + len(before["valid.tsv"]))


def test_fairseq_reads_the_manifests(prepared: Path) -> None:
    from fairseq.data import FileAudioDataset

    _, rows = read_manifest(prepared / "manifests" / "valid.tsv")
    dataset = FileAudioDataset(str(prepared / "manifests" / "valid.tsv"), sample_rate=SAMPLE_RATE)
    assert len(dataset) == len(rows)
    for i, (_, _, _, frames) in enumerate(rows):
        assert dataset[i]["source"].shape == (frames,)


def test_read_pipe_takes_everything_in_few_reads(tmp_path: Path) -> None:
    from speechfm.core.audio import read_pipe

    # a writer that trickles small chunks, as ffmpeg does, and more than the pipe holds
    code = ("import os, sys, time\n"
            "data = bytes(range(256)) * 12000\n"
            "for i in range(0, len(data), 700):\n"
            "    os.write(1, data[i:i + 700])\n"
            "    if i % 140000 == 0: time.sleep(0.001)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, bufsize=0)
    with proc.stdout:
        raw = read_pipe(proc.stdout.fileno())
    assert proc.wait() == 0
    assert raw == bytes(range(256)) * 12000
    # not a pipe: read as it comes
    (tmp_path / "f.bin").write_bytes(b"x" * 300_000)
    fd = os.open(tmp_path / "f.bin", os.O_RDONLY)
    try:
        assert read_pipe(fd) == b"x" * 300_000
    finally:
        os.close(fd)
