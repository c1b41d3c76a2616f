"""Run any fairseq hydra task (pre-training, CTC fine-tuning) locally or under Slurm.

The launcher composes a complete fairseq config from a preset and overrides, writes it next to
the checkpoints (`<save_dir>/config.yaml`) with a small job description (`job.json`), and starts
`python -m speechfm.launch.worker` once per rank: directly on this machine, or through `srun` in an
sbatch script rendered from a site file (`pipelines/sites/<site>.yaml`). The worker applies the
fixes fairseq needs on current torch, handles pre-emption signals and logs to MLflow.
"""

from __future__ import annotations

from speechfm.launch.job import FairseqJob, compose_config, read_job, write_job
from speechfm.launch.local import run_local

__all__ = ["FairseqJob", "compose_config", "read_job", "run_local", "write_job"]
