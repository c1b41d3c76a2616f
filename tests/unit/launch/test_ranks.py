"""`launch.ranks`, the one way every verb starts ranks: processes here with torchrun's variables,
an explicit entry point per rank, the first failure ends them all; on a Slurm site an sbatch
script of `python -m speechfm.launch.rank RANKS.json` tasks."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechfm.core.sites import load_site
from speechfm.launch.ranks import Ranks, ranks, read_ranks
from tests.helpers import ROOT

# the module (the package re-exports its function `ranks` under the same name)
launch = importlib.import_module("speechfm.launch.ranks")


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ranks are new interpreters: they import the entry points from this checkout."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), str(ROOT)]))


def test_ranks_here_get_torchruns_variables_and_run_the_entry_point(tmp_path: Path) -> None:
    job = Ranks(name="t", out_dir=tmp_path, entry="tests.helpers.rank_entries:record",
                args={"out": str(tmp_path)}, world_size=2)
    assert ranks(job, load_site("local")).status == 0
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["RANK"] for s in seen] == ["0", "1"] == [s["LOCAL_RANK"] for s in seen]
    assert {s["WORLD_SIZE"] for s in seen} == {"2"} == {s["LOCAL_WORLD_SIZE"] for s in seen}
    assert len({s["MASTER_PORT"] for s in seen}) == 1 and seen[0]["MASTER_ADDR"] == "127.0.0.1"
    assert read_ranks(tmp_path / "ranks.json") == job


def test_one_failed_rank_ends_the_others_and_gives_its_status(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "KILL_GRACE_SECONDS", 1.0)
    job = Ranks(name="t", out_dir=tmp_path, entry="tests.helpers.rank_entries:fail_one",
                args={"status": 3, "hang_seconds": 120}, world_size=2)
    job.write()
    clock = time.monotonic()
    assert launch.run_here(job) == 3
    assert time.monotonic() - clock < 60  # rank 0 did not sleep its 120 s


def test_a_rank_started_with_another_world_size_says_so(tmp_path: Path) -> None:
    path = Ranks(name="t", out_dir=tmp_path, entry="tests.helpers.rank_entries:record",
                 args={"out": str(tmp_path)}, world_size=4).write()
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2"}
    done = subprocess.run([sys.executable, "-m", "speechfm.launch.rank", str(path)], env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 2
    assert "this job needs 4 ranks but 2 were started" in done.stderr and str(path) in done.stderr
    assert not list(tmp_path.glob("rank[0-9]*.json"))


def test_a_broken_description_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ranks.json").write_text('{"name": "t", "out_dir"')
    done = subprocess.run([sys.executable, "-m", "speechfm.launch.rank",
                           str(tmp_path / "ranks.json")], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 2 and "cannot read the ranks description" in done.stderr
    assert "Traceback" not in done.stderr


def test_on_a_slurm_site_the_ranks_are_one_sbatch_job_of_rank_tasks(tmp_path: Path,
                                                                    monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    job = Ranks(name="t", out_dir=tmp_path / "run", entry="tests.helpers.rank_entries:record",
                args={"out": str(tmp_path)}, world_size=2, cpu=True)
    assert ranks(job, load_site("local-slurm"), dry_run=True).status == 0
    script = (tmp_path / "run" / "job.sbatch").read_text()
    assert f"-m speechfm.launch.rank {tmp_path / 'run' / 'ranks.json'}" in script
    assert "#SBATCH --ntasks-per-node=2" in script
    assert not list(tmp_path.glob("rank[0-9]*.json"))  # a dry run starts nothing


def test_cpu_or_gpu_is_the_sites_rule() -> None:
    """A Slurm site trains on GPUs when its nodes have them (LUMI), here when torch sees one."""
    import torch

    assert launch.no_gpu(load_site("lumi")) is False
    assert launch.no_gpu(load_site("local-slurm")) is True
    assert launch.no_gpu(load_site("local")) is (not torch.cuda.is_available())
