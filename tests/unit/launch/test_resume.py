"""Resume or start afresh (`speechfm.launch.resume`), the fallback from a damaged
checkpoint_last.pt (`speechfm.engine.fairseq.checkpoints`) and the network-plugin check
(`speechfm.launch.netplugin`), at unit level: real torch checkpoints, real fairseq configs, real
library files on a real LD_LIBRARY_PATH (an empty file is what the check looks for)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechfm.core.errors import SpeechfmError
from speechfm.core.presets import load_pretrain
from speechfm.engine.fairseq.checkpoints import (
    LAST,
    ensure_loadable_last,
    num_updates,
    restore_file,
)
from speechfm.engine.fairseq.job import compose_config, distributed_settings, update_freq
from speechfm.launch.netplugin import REQUIRE_ENV, check_plugin, find_plugin, plugin_names
from speechfm.launch.resume import (
    FAIRSEQ_LENGTH,
    RUN_FILE,
    fairseq_settings,
    file_identity,
    settle_run,
)
from tests.helpers import ROOT


def test_settle_run_resumes_same_settings_and_moves_changed_runs_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    assert settle_run(run, {"lr": 1}, has_checkpoint=False) is False  # a new run
    assert json.loads((run / RUN_FILE).read_text()) == {"lr": 1}
    (run / LAST).write_bytes(b"x")
    assert settle_run(run, {"lr": 1}, has_checkpoint=True) is True
    with caplog.at_level(logging.WARNING):
        assert settle_run(run, {"lr": 2}, has_checkpoint=True) is False
    assert "settings changed (lr)" in caplog.text
    assert (tmp_path / "run.previous" / LAST).exists() and not (run / LAST).exists()
    assert json.loads((run / RUN_FILE).read_text()) == {"lr": 2}
    (run / LAST).write_bytes(b"y")
    assert settle_run(run, {"lr": 2}, has_checkpoint=True, fresh=True) is False
    assert (tmp_path / "run.previous" / LAST).read_bytes() == b"y"  # one generation kept
    (run / RUN_FILE).unlink()
    (run / LAST).write_bytes(b"z")
    with caplog.at_level(logging.WARNING):
        assert settle_run(run, {"lr": 2}, has_checkpoint=True) is True  # runs made before this
    assert "no record of the settings" in caplog.text


def _tiny(gpus: int, simulate: int, *overrides: str) -> dict:
    fairseq = load_pretrain("tiny")["fairseq"]
    run = {"task": {"data": "/data"}, "checkpoint": {"save_dir": "/run"},
           "optimization": {"update_freq": [update_freq(gpus, simulate)]}}
    return compose_config(fairseq, run, distributed_settings(gpus, True),
                          overrides=[*overrides, *FAIRSEQ_LENGTH])


def test_fairseq_settings_ignore_the_length_and_how_many_ranks_share_the_batch() -> None:
    base = fairseq_settings(_tiny(1, 4, "optimization.max_update=300"))
    assert fairseq_settings(_tiny(1, 4, "optimization.max_update=900")) == base
    assert base["lr_scheduler"]["total_num_update"] == 0  # derived from max_update, neutralised
    assert fairseq_settings(_tiny(2, 4)) == base  # 2 ranks x update_freq 2 = 1 x 4
    assert fairseq_settings(_tiny(2, 2)) != base  # half the effective batch
    assert fairseq_settings(_tiny(1, 4, "optimization.lr=[0.001]")) != base
    assert fairseq_settings(_tiny(1, 4, "model.encoder_layers=2")) != base


def test_file_identity_changes_when_a_checkpoint_is_rewritten(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint_last.pt"
    ckpt.write_bytes(b"1")
    first = file_identity(ckpt)
    os.utime(ckpt, ns=(1, 2))
    assert file_identity(ckpt) != first and file_identity(None) is None
    assert file_identity(tmp_path)["files"] == [("checkpoint_last.pt", 1, 2)]


def _checkpoint(path: Path, updates: int) -> Path:
    import torch

    torch.save({"model": {"w": torch.zeros(4096)}, "cfg": None,
                "optimizer_history": [{"num_updates": updates}]}, path)
    return path


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def test_a_truncated_checkpoint_last_falls_back_to_the_newest_loadable(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for updates in (10, 20, 30):
        _checkpoint(tmp_path / f"checkpoint_1_{updates}.pt", updates)
        time.sleep(0.01)  # distinct mtimes: newest is 30
    _checkpoint(tmp_path / LAST, 30)
    assert ensure_loadable_last(tmp_path) == tmp_path / LAST  # intact: nothing changes
    assert not list(tmp_path.glob("*.damaged"))
    _truncate(tmp_path / LAST)  # killed while fairseq copied checkpoint_1_30.pt over it
    _truncate(tmp_path / "checkpoint_1_30.pt")  # and the newest one is damaged too
    with caplog.at_level(logging.WARNING):
        ensure_loadable_last(tmp_path)
    assert num_updates(tmp_path / LAST) == 20
    assert "resuming from checkpoint_1_20.pt (update 20) instead" in caplog.text
    assert (tmp_path / f"{LAST}.damaged").exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_no_loadable_checkpoint_is_an_error_never_a_silent_restart(tmp_path: Path) -> None:
    _checkpoint(tmp_path / LAST, 5)
    _truncate(tmp_path / LAST)
    (tmp_path / "checkpoint_best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SpeechfmError, match="no other checkpoint in the folder does"):
        ensure_loadable_last(tmp_path)
    assert ensure_loadable_last(tmp_path / "empty") is None  # nothing to resume: a new run


def test_only_the_default_restore_file_is_checked() -> None:
    assert restore_file({"checkpoint": {"save_dir": "/r", "restore_file": LAST}}) == Path("/r") / LAST
    assert restore_file({"checkpoint": {"save_dir": "/r", "restore_file": "/x/other.pt"}}) is None


def test_net_plugin_is_found_on_ld_library_path(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    env = {"LD_LIBRARY_PATH": f"/nowhere:{lib}"}
    assert find_plugin(env) is None
    (lib / "librccl-net.so").write_bytes(b"")  # what aws-ofi-rccl installs
    assert find_plugin(env) == lib / "librccl-net.so"
    assert plugin_names({"NCCL_NET_PLUGIN": "aws-ofi"}) == ["librccl-net-aws-ofi.so",
                                                           "libnccl-net-aws-ofi.so"]
    assert find_plugin({**env, "NCCL_NET_PLUGIN": "none"}) is None
    assert find_plugin({"NCCL_NET_PLUGIN": str(lib / "librccl-net.so")}) == lib / "librccl-net.so"
    (lib / "libnccl-net-ofi.so").symlink_to(lib / "missing.so")  # a dangling link does not count
    assert find_plugin({**env, "NCCL_NET_PLUGIN": "ofi"}) is None


def test_a_required_plugin_that_is_missing_is_a_clear_error(tmp_path: Path) -> None:
    env = {"LD_LIBRARY_PATH": str(tmp_path), REQUIRE_ENV: "1"}
    with pytest.raises(SpeechfmError, match="rank 3: no RCCL/NCCL network plugin"):
        check_plugin("3", env)
    assert check_plugin("3", {"LD_LIBRARY_PATH": str(tmp_path)}) is None  # not required: logged


def _ranks(tmp_path: Path, kind: str) -> Path:
    """A ranks description whose rank would train a fairseq job (it never gets that far in
    these tests), or run a `speechfm` command."""
    from speechfm.launch.ranks import Ranks

    save = tmp_path / "run"
    save.mkdir()
    (save / "config.yaml").write_text(f"checkpoint: {{save_dir: {save}}}\n")
    (save / "job.json").write_text(json.dumps({"save_dir": str(save), "world_size": 1}))
    if kind == "fairseq":
        entry, args = "speechfm.engine.fairseq.worker:run", {"job": str(save / "job.json")}
    else:
        entry, args = "speechfm.cli:main", {"argv": ["finetune", "--help"]}
    return Ranks(name="t", out_dir=save, entry=entry, args=args).write()


@pytest.mark.parametrize("kind", ["fairseq", "command"])
def test_a_rank_without_the_required_plugin_fails_before_training_starts(
        tmp_path: Path, kind: str) -> None:
    ranks = _ranks(tmp_path, kind)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "LD_LIBRARY_PATH": str(tmp_path), REQUIRE_ENV: "1", "SLURM_PROCID": "0",
           "SLURM_NTASKS": "1", "SLURM_JOB_NODELIST": "localhost"}
    env.pop("RANK", None)
    start = time.monotonic()
    command = [sys.executable, "-m", "speechfm.launch.rank", str(ranks)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2
    assert "rank 0: no RCCL/NCCL network plugin" in proc.stdout + proc.stderr
    assert "fairseq" not in proc.stdout + proc.stderr and "usage: speechfm" not in proc.stdout
    assert time.monotonic() - start < 60
    (tmp_path / "librccl-net.so").write_bytes(b"")
    if kind == "command":  # with the plugin, the entry point itself runs
        ok = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
        assert ok.returncode == 0 and "usage: speechfm finetune" in ok.stdout
        assert f"RCCL/NCCL network plugin {tmp_path / 'librccl-net.so'}" in ok.stderr
