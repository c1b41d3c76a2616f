"""A damaged `checkpoint_last.pt` is replaced by the newest checkpoint that loads, before fairseq
starts; training never silently restarts from update 0.

fairseq writes a checkpoint once under its own name (`checkpoint_E_U.pt`, atomically) and then
*copies* it to `checkpoint_best.pt` and `checkpoint_last.pt` in place: a job killed during that
copy (time limit, pre-emption, node failure) leaves a truncated `checkpoint_last.pt`, and the
requeued job would die loading it. Rank 0 checks it first: torch opens it memory-mapped (the zip
directory and the pickled state are read, the tensors are not), so the check costs little even
for a 12 GB X-Large checkpoint.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from speechfm.core.errors import SpeechfmError

log = logging.getLogger(__name__)

LAST = "checkpoint_last.pt"
DAMAGED_SUFFIX = ".damaged"


def num_updates(path: Path) -> int:
    """The update counter of a fairseq checkpoint; raises ValueError if it does not load."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a truncated file
        raise ValueError(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    try:
        return int(state["optimizer_history"][-1]["num_updates"])
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"not a fairseq training checkpoint (no {exc})") from None


def restore_file(config: dict[str, Any]) -> Path | None:
    """The checkpoint fairseq will resume from, when it is the default `checkpoint_last.pt` of
    the save dir (a `checkpoint.restore_file` the user named is left alone)."""
    ckpt = config.get("checkpoint") or {}
    if ckpt.get("restore_file", LAST) != LAST or ckpt.get("finetune_from_model"):
        return None
    return Path(ckpt["save_dir"]) / LAST


def ensure_loadable_last(save_dir: Path) -> Path | None:
    """If `save_dir/checkpoint_last.pt` exists but does not load, put the newest loadable
    checkpoint of the folder in its place (the damaged file is kept as `.damaged`) with a warning.
    Returns the checkpoint now at `checkpoint_last.pt` (None when there is none)."""
    last = save_dir / LAST
    if not last.exists():
        return None
    try:
        updates = num_updates(last)
    except ValueError as damage:
        problem = str(damage)
    else:
        log.info("resuming from %s (update %d)", last, updates)
        return last
    others = sorted((p for p in save_dir.glob("checkpoint*.pt") if p.name != LAST),
                    key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for candidate in others:
        try:
            updates = num_updates(candidate)
        except ValueError as exc:
            log.warning("%s does not load either: %s", candidate, exc)
            continue
        tmp = save_dir / f"{LAST}.fallback.tmp"
        shutil.copyfile(candidate, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(last, last.with_name(LAST + DAMAGED_SUFFIX))
        os.replace(tmp, last)
        log.warning("%s does not load (%s; a copy cut short?): resuming from %s (update %d) "
                    "instead; the damaged file is kept as %s%s", last, problem, candidate.name,
                    updates, LAST, DAMAGED_SUFFIX)
        return last
    raise SpeechfmError(
        f"does not load ({problem}) and no other checkpoint in the folder does", path=last,
        hint="restore it, or move it away to start this run from update 0")
