"""Checks every rank makes before the training library starts (fairseq in `worker`, the
transformers Trainer in `rank`): the network plugin, then, on rank 0, a loadable checkpoint to
resume from. A failure here ends the job in its first seconds with one clear line."""

from __future__ import annotations

import logging
import os
from typing import Any

from speechfm.core.errors import SpeechfmError
from speechfm.launch.checkpoints import ensure_loadable_last, restore_file
from speechfm.launch.netplugin import check_plugin

log = logging.getLogger(__name__)


def preflight(rank: str, config: dict[str, Any] | None = None) -> bool:
    """Run the checks for one rank (`config`: the fairseq config, None for other trainers);
    False (after logging the reason) when the job must not start."""
    try:
        check_plugin(rank)
        last = restore_file(config) if config is not None and rank == "0" else None
        if last is not None:
            ensure_loadable_last(last.parent)
    except SpeechfmError as exc:
        log.error("%s", exc)
        return False
    return True


def rank_of(environ: dict[str, str] | None = None) -> str:
    """This process's global rank as the launchers give it (RANK, else SLURM_PROCID, else 0)."""
    env = os.environ if environ is None else environ
    return env.get("RANK") or env.get("SLURM_PROCID") or "0"
