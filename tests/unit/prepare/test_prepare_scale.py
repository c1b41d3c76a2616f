"""Prepare at the reference's scale: the streaming merge on a synthesized multi-unit index, the
segment index and the fairseq dataset and task that read it, two builders of one unit, planning
the walk."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.errors import SpeechfmError
from speechfm.core.labeled import read_table
from speechfm.core.segment_index import (
    SegmentIndex,
    StaleIndexError,
    build_index,
    index_dir,
    open_index,
)
from speechfm.prepare.config import PrepareConfig
from speechfm.prepare.discover import plan_units, unit_of
from speechfm.prepare.pipeline import merge
from speechfm.prepare.units import done_path, process_unit, unit_lock
from tests.helpers import ROOT, run_speechfm
from tests.helpers.merge_reference import reference_merge, synthesize_units


def test_streaming_merge_equals_the_reference_on_a_synthesized_multi_unit_index(
        tmp_path: Path) -> None:
    units = synthesize_units(tmp_path, 30_000, channels=3, files_per_unit=6,
                             segments_per_file=150, shard_max_bytes=3_000_000)
    assert len(units) == 34 and list(tmp_path.glob("shards/*/*_1.tar.index.jsonl"))  # split units
    config = PrepareConfig(valid_hours=0.4, seed=5)
    summary = merge(tmp_path, units, config)
    assert summary["segments"] == 30_000 and summary["rejects"]
    expected = reference_merge(tmp_path, units, config)
    for name, data in expected.items():
        assert (tmp_path / name).read_bytes() == data, name
    for tsv in (tmp_path / "manifests").glob("*.tsv"):  # prepare's index = the one from text
        written = {p.name: p.read_bytes() for p in index_dir(tsv).iterdir()}
        build_index(tsv)
        assert {p.name: p.read_bytes() for p in index_dir(tsv).iterdir()} == written
    index = SegmentIndex(tmp_path / "manifests" / "train.tsv")
    assert index.rows == summary["manifests"]["train"]
    assert index.run_start.size == index.path_offsets.size - 1 < index.rows / 20  # a run a shard
    per_row = sum(c.nbytes for c in (index.offsets, index.sizes, index.frames)) / index.rows
    assert per_row == 20


def _labeled_manifest(demo: Path, out: Path) -> Path:
    """Fine-tuning data as the CTC stage writes it: plain FLAC files relative to a root."""
    rows = read_table(demo / "labeled" / "train.tsv") + read_table(demo / "labeled" / "valid.tsv")
    root = demo / "labeled"
    lines = [str(root)] + [f"{Path(path).relative_to(root)}\t{sf.info(path).frames}"
                           for path, _ in rows]
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.tsv").write_text("\n".join(lines) + "\n")
    return out / "train.tsv"


def _threads_in_worker(batch: list) -> int:
    import torch

    return torch.get_num_threads()


def test_indexed_dataset_reads_plain_files_skips_short_ones_and_loads_in_workers(
        small_demo: Path, tmp_path: Path) -> None:
    import torch
    from fairseq.data import FileAudioDataset

    from speechfm.engine.fairseq.indexed_audio import IndexedAudioDataset

    tsv = _labeled_manifest(small_demo, tmp_path)
    build_index(tsv)
    index = SegmentIndex(tsv)
    assert index.rows == index.path_offsets.size - 1 == 12  # every row its own file
    median = int(np.median(index.frames))
    ours = IndexedAudioDataset(str(tsv), SAMPLE_RATE, min_sample_size=median, pad=True)
    theirs = FileAudioDataset(str(tsv), SAMPLE_RATE, min_sample_size=median, pad=True)
    assert ours.skipped_indices == theirs.skipped_indices and ours.skipped_indices
    assert np.array_equal(ours.sizes, theirs.sizes)
    for i in range(len(theirs)):
        assert torch.equal(ours[i]["source"], theirs[i]["source"])
    loader = torch.utils.data.DataLoader(ours, batch_size=2, num_workers=1,
                                         collate_fn=_threads_in_worker)
    assert set(loader) == {1}  # one decoding thread per loader worker


def test_corrupted_or_stale_index_is_a_clear_error(tmp_path: Path) -> None:
    tsv = tmp_path / "train.tsv"
    tsv.write_text(f"{tmp_path}\nshards/a.tar:512:1000\t32000\nshards/a.tar:2048:900\t40000\n"
                   "shards/b.tar:512:10\t16000\nclip.flac\t20000\n")
    folder = build_index(tsv)
    index = SegmentIndex(tsv)
    assert [index.entry(i) for i in range(4)] == [
        ("shards/a.tar", 512, 1000), ("shards/a.tar", 2048, 900), ("shards/b.tar", 512, 10),
        ("clip.flac", 0, 2**32 - 1)]
    assert index.frames.tolist() == [32000, 40000, 16000, 20000]
    frames = folder / "frames.npy"
    data = frames.read_bytes()
    frames.write_bytes(data[:-3])
    with pytest.raises(SpeechfmError, match=f"{frames}: index file is 157 bytes, expected 160 .truncated"):
        SegmentIndex(tsv)
    from speechfm.engine.fairseq.indexed_audio import IndexedAudioDataset

    with pytest.raises(SpeechfmError, match="frames.npy"):  # the training dataset says it too
        IndexedAudioDataset(str(tsv), SAMPLE_RATE)
    frames.write_bytes(data[:40])  # not even a whole header
    with pytest.raises(SpeechfmError, match="frames.npy: unreadable index column"):
        SegmentIndex(tsv)
    frames.write_bytes(data)
    tsv.write_text(tsv.read_text() + "clip2.flac\t30000\n")
    with pytest.raises(StaleIndexError, match="another version of train.tsv"):
        SegmentIndex(tsv)
    assert open_index(tsv, build_missing=True).rows == 5
    shutil.rmtree(folder)
    with pytest.raises(StaleIndexError, match="no segment index"):
        SegmentIndex(tsv)
    tsv.write_text(f"{tmp_path}\nshards/a.tar:512\t32000\n")
    with pytest.raises(SpeechfmError, match="train.tsv: line 2 is not"):
        build_index(tsv)


def _build(archive: Path, out: Path, config: PrepareConfig, start) -> None:
    """A builder process: waits for the start signal, then builds the archive's only unit."""
    start.wait()
    process_unit(archive, out, plan_units(archive, config.unit)[0], config)


def test_two_builders_of_one_unit_take_turns_and_the_result_verifies(
        small_demo: Path, tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    shutil.copytree(small_demo / "archive" / "yle_tv1", archive / "yle_tv1")
    config = PrepareConfig(unit="year", vad="webrtc")
    (unit,) = plan_units(archive, "year")
    assert len(unit.files) == 2
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    # a builder waits while another holds the unit's lock (and writes nothing meanwhile)
    (out / "shards" / "yle_tv1").mkdir(parents=True)
    with unit_lock(out, unit):
        waiting = ctx.Process(target=_build, args=(archive, out, config, start))
        waiting.start()
        start.set()
        time.sleep(3)
        assert waiting.is_alive() and not list(out.rglob("*.part"))
    waiting.join(120)
    assert waiting.exitcode == 0 and done_path(out, unit).exists()
    # two builders at once, on a unit whose marker is gone (as after a crash)
    done_path(out, unit).unlink()
    start = ctx.Event()
    builders = [ctx.Process(target=_build, args=(archive, out, config, start)) for _ in range(2)]
    for b in builders:
        b.start()
    start.set()
    for b in builders:
        b.join(120)
    assert [b.exitcode for b in builders] == [0, 0]
    assert not list(out.rglob("*.part"))
    proc = run_speechfm("prepare", archive, "--out", out, "--unit", "year", "--vad", "webrtc")
    assert proc.returncode == 0, proc.stderr
    assert '"built": 0' in proc.stdout
    verified = run_speechfm("verify", out)
    assert verified.returncode == 0, verified.stdout


def _rglob_units(root: Path, unit: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """What planning gave before the scandir walk (Path.rglob, is_dir per entry)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_dir() or path.name.startswith(".") or path.name.endswith(
                (".truth.json", ".index.jsonl")):
            continue
        if path.suffix.lower() in {".json", ".jsonl", ".txt", ".tsv", ".csv", ".md", ".part",
                                   ".done", ".log", ".xml"}:
            continue
        rel = path.relative_to(root)
        groups.setdefault(unit_of(rel, unit), []).append(rel.as_posix())
    return [(ch, name, tuple(sorted(files))) for (ch, name), files in sorted(groups.items())]


def test_planning_walk_finds_what_rglob_found(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    for rel in ("tv1/2021/01/31/tv1_0600-0700.ts", "tv1/2021/02/01/tv1_0600-0700.ts",
                "tv1/2021/01/31/tv1_0600-0700.truth.json", "tv1/2021/01/31/.hidden.ts",
                "tv1/.cache/2021/01/01/x.ts", "radio/misc/show.mp3", "radio/misc/notes.txt",
                "radio/2021/03/01/r_0000-0100.ts", "top.ts"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\0" * (len(rel) * 188))
    os.symlink("/nonexistent/file.ts", root / "radio" / "misc" / "dangling.ts")
    os.symlink(root / "tv1", root / "radio" / "linked_dir")  # not entered
    for unit in ("day", "month", "year"):
        planned = plan_units(root, unit)
        assert [(u.channel, u.name, u.files) for u in planned] == _rglob_units(root, unit)
        for u in planned:
            assert u.size == sum((root / f).lstat().st_size for f in u.files)
    undated = {u.key: u for u in plan_units(root, "month")}["radio/undated"]
    assert "radio/misc/dangling.ts" in undated.files and "radio/linked_dir" not in undated.files


def test_fairseq_registers_the_plugin_once_without_speechfm_code(tmp_path: Path) -> None:
    """As `fairseq-hydra-train common.user_dir=...` does it, before and after speechfm's own
    registration, in a fresh process: one registration, and the task loads its data."""
    from speechfm.engine.fairseq.userdir import PLUGIN_DIR

    tsv = tmp_path / "train.tsv"
    tsv.write_text(f"{tmp_path}\nshards/a.tar:512:1000\t32000\n")
    (tmp_path / "shards").mkdir()
    code = f"""
from argparse import Namespace
from fairseq import tasks, utils
from omegaconf import OmegaConf
utils.import_user_module(Namespace(user_dir={str(PLUGIN_DIR)!r}))
from speechfm.engine.fairseq import userdir
userdir.register()
utils.import_user_module(Namespace(user_dir={str(PLUGIN_DIR)!r}))
from fairseq.tasks.audio_pretraining import AudioPretrainingConfig
cfg = OmegaConf.merge(OmegaConf.structured(AudioPretrainingConfig),
                      {{"data": {str(tmp_path)!r}, "tpu": False, "seed": 1}})
cfg._name = "speechfm_audio_pretraining"
task = tasks.setup_task(cfg)
task.load_dataset("train")
print(type(task).__name__, type(task.datasets["train"]).__name__, len(task.datasets["train"]))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["IndexedAudioPretrainingTask", "IndexedAudioDataset", "1"]
    assert (tmp_path / "train.idx").is_dir()  # a plain fairseq run builds a missing index


def test_large_presets_read_the_index_and_get_the_user_dir(tmp_path: Path) -> None:
    from speechfm.core.presets import load_pretrain
    from speechfm.engine.fairseq import compose_config
    from speechfm.engine.fairseq.userdir import PLUGIN_DIR, with_user_dir

    for name in ("base", "large", "xlarge"):
        cfg = compose_config(load_pretrain(name)["fairseq"])
        assert cfg["task"]["_name"] == "speechfm_audio_pretraining"
        assert cfg["common"]["user_dir"] == str(PLUGIN_DIR)
    tiny = compose_config(load_pretrain("tiny")["fairseq"])
    assert tiny["task"]["_name"] == "audio_pretraining" and tiny["common"]["user_dir"] is None
    moved = with_user_dir({**cfg, "common": {"user_dir": "/login/node/speechfm_fairseq"}})
    assert moved["common"]["user_dir"] == str(PLUGIN_DIR)  # the worker's own installation
    with pytest.raises(SpeechfmError, match="takes one user dir"):
        compose_config(load_pretrain("base")["fairseq"], {"common": {"user_dir": str(tmp_path)}})
