"""What keeps fairseq 0.12 running on torch 2.13, applied in each rank's own process (never by
editing installed files). docs/architecture.md lists each fix, why it exists and its test."""

from __future__ import annotations

import os
from typing import Any

WEIGHTS_ONLY_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def _all_gather_list_cpu(data: Any, group: Any = None, max_size: int = 16384) -> list[Any]:
    """fairseq's `all_gather_list` without its CUDA buffers: gathers picklable objects on CPU."""
    import torch.distributed as dist
    from fairseq import utils
    from fairseq.distributed import utils as dist_utils

    group = dist_utils.get_global_group() if group is None else group
    gathered: list[Any] = [None] * dist_utils.get_world_size(group)
    dist.all_gather_object(gathered, utils.move_to_cpu(data), group=group)
    return gathered


def apply_torch_fixes(cpu: bool) -> None:
    """Make fairseq 0.12 work on torch 2.13 in this process."""
    # fairseq checkpoints pickle their config, meters and dictionaries: torch >= 2.6 refuses them
    # by default. A rank only loads checkpoints of the job itself or ones the user named.
    os.environ.setdefault(WEIGHTS_ONLY_ENV, "1")
    if cpu:  # all_gather_list allocates torch.cuda.ByteTensor buffers and pins memory
        from fairseq.distributed import utils as dist_utils

        dist_utils.all_gather_list = _all_gather_list_cpu
