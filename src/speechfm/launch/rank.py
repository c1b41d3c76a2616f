"""One Slurm task as a torch.distributed rank of a `speechfm` command:
`python -m speechfm.launch.rank VERB ARGS...` (what the sbatch script of the transformers
fine-tuning backend runs in each srun task).

Sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT from Slurm's
variables (what torchrun would set), makes the network-plugin check, then replaces itself with
`python -m speechfm VERB ARGS...`, which sees a worker's environment and trains.
"""

from __future__ import annotations

import logging
import os
import sys

from speechfm.launch.preflight import preflight
from speechfm.launch.worker import rank_environment


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m speechfm.launch.rank VERB [ARGS...]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = {**os.environ, **rank_environment()}
    env.setdefault("LOCAL_WORLD_SIZE", env.get("SLURM_NTASKS_PER_NODE", "1"))
    os.environ.update(env)
    if not preflight(env["RANK"]):
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "speechfm", *argv], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
