"""`speechfm finetune --backend transformers` on LUMI: the Slurm job it renders, against its
golden file."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import GOLDEN


def test_transformers_backend_on_lumi_renders_a_slurm_job_matching_golden_file() -> None:
    """`finetune --site lumi --gpus 16` (transformers) trains on two compute nodes, never on the
    login node: 16 srun tasks, each `speechfm.launch.rank` calling the recipe's `train_rank`
    with the same config."""
    from speechfm.cli import build_parser
    from speechfm.core.sites import load_site
    from speechfm.finetune.command import config_of
    from speechfm.finetune.recipe import RANK_ENTRY, transformers_ranks
    from speechfm.launch.slurm import render_sbatch
    from tests.helpers import assert_lumi_network

    argv = ["finetune", "--backend", "transformers", "--preset", "base", "--labeled",
            "/scratch/project_465000000/labeled", "--init",
            "/scratch/project_465000000/runs/pretrain/checkpoint_last.pt",
            "--out", "/scratch/project_465000000/runs/finetune", "--site", "lumi",
            "--gpus", "16", "--epochs", "80"]
    config = config_of(build_parser().parse_args(argv))
    job = transformers_ranks(config, cpu=False)
    script = render_sbatch(job, load_site("lumi"), Path("/scratch/project_465000000"))
    golden = GOLDEN / "finetune_transformers_lumi_16.sbatch"
    if os.environ.get("SPEECHFM_UPDATE_GOLDEN"):
        golden.write_text(script)
    assert script == golden.read_text()
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=8" in script
    assert ("python3 -m speechfm.launch.rank /scratch/project_465000000/runs/finetune/ranks.json"
            in script)
    assert job.entry == RANK_ENTRY and job.args["config"]["epochs"] == 80
    assert job.args["config"]["backend"] == "transformers" and job.world_size == 16
    assert "--signal" not in script and "requeue" not in script  # the Trainer cannot act on them
    assert_lumi_network(script)
