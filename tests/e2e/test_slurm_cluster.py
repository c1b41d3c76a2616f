"""The test Slurm cluster itself: array jobs, srun steps and dependencies run for real."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_array_job_and_srun_steps(slurm_cluster, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        "srun --ntasks=2 bash -c 'echo task $SLURM_PROCID of $SLURM_NTASKS' "
        f"> {tmp_path}/out_$SLURM_ARRAY_TASK_ID.txt\n"
    )
    job = slurm_cluster.sbatch("--array=0-1", "--ntasks=2", "--cpus-per-task=1",
                               f"--output={tmp_path}/slurm-%A_%a.log", str(script))
    follow = slurm_cluster.sbatch(f"--dependency=afterok:{job}", f"--output={tmp_path}/f.log",
                                  "--wrap", f"touch {tmp_path}/after")
    assert slurm_cluster.wait_job(follow, timeout=120) == "COMPLETED"
    for i in (0, 1):
        lines = sorted((tmp_path / f"out_{i}.txt").read_text().splitlines())
        assert lines == ["task 0 of 2", "task 1 of 2"]
    assert (tmp_path / "after").exists()
