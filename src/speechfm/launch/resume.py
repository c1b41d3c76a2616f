"""Resume or start afresh: a training run continues from its checkpoints only when nothing but its
length changed.

`dvc repro` after raising `max_update` (or the fine-tuning length) must continue the run with its
update counter, learning-rate schedule and data position; any other change of the settings (or
of the inputs: the pre-trained model, the labeled data) must not mix two runs in one folder. The
launcher writes the run's *length-free* settings to `RUN_FILE` beside the checkpoints and compares
them at the next start. A fresh start moves the old folder aside to `<folder>.previous` (one
generation kept), never deletes it silently.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_FILE = "run_settings.json"
PREVIOUS_SUFFIX = ".previous"

FAIRSEQ_LENGTH = ("optimization.max_update=0", "optimization.max_epoch=0")
"""Overrides that make two fairseq configs comparable whatever their length (0 = no limit;
values derived from max_update, such as a scheduler's total steps, follow)."""
FAIRSEQ_EXECUTION = ("distributed_training", "bmuf.distributed_world_size",
                     "optimization.update_freq", "dataset.num_workers", "common.log_interval",
                     "checkpoint.save_interval_updates", "checkpoint.keep_interval_updates",
                     "dataset.validate_interval_updates")
"""How a run is executed and watched, not what it trains: a resume may change these (more or
fewer GPUs with the same effective batch, loader workers, how often it logs, validates and
saves)."""


def fairseq_settings(length_free: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved fairseq config (composed with `FAIRSEQ_LENGTH`) that must be equal
    for a resume: everything but the execution keys, plus the effective batch."""
    config = json.loads(json.dumps(length_free))  # a deep copy of plain data
    world = config.get("distributed_training", {}).get("distributed_world_size", 1)
    freq = (config.get("optimization", {}).get("update_freq") or [1])[0]
    for key in FAIRSEQ_EXECUTION:
        section, _, field = key.partition(".")
        if field:
            config.get(section, {}).pop(field, None)
        else:
            config.pop(section, None)
    config["effective_batch_ranks"] = world * freq
    return config


def file_identity(path: Path | None) -> Any:
    """Size and modification time of a file, or of the files of a folder: a cheap stand-in for
    its content (a rewritten pre-trained checkpoint has a new mtime)."""
    if path is None:
        return None
    path = Path(path).resolve()
    if path.is_dir():
        return {"path": str(path), "files": sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file())}
    st = path.stat()
    return {"path": str(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def move_aside(folder: Path) -> Path:
    """Rename `folder` to `<folder>.previous` (replacing an older one); returns the new name."""
    previous = folder.with_name(folder.name + PREVIOUS_SUFFIX)
    if previous.exists():
        shutil.rmtree(previous)
    os.replace(folder, previous)
    return previous


def settle_run(folder: Path, settings: dict[str, Any], has_checkpoint: bool,
               fresh: bool = False) -> bool:
    """Decide before a run starts: True to resume from the checkpoints in `folder`, False to
    start afresh (the old folder, if any, moved aside). `settings` are the run's length-free
    settings (JSON data); `fresh` forces a new start."""
    folder = Path(folder)
    record = folder / RUN_FILE
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back from JSON
    resume = False
    if has_checkpoint:
        try:
            stored = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stored = None
        if fresh:
            log.warning("starting afresh as asked; the previous run is kept in %s",
                        move_aside(folder))
        elif stored is None:
            log.warning("%s: no record of the settings its checkpoints were made with; resuming "
                        "without checking them", folder)
            resume = True
        elif stored == settings:
            log.info("resuming the run in %s: same settings (its length may differ)", folder)
            resume = True
        else:
            changed = _differences(stored, settings)
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5
                                              else "")
            log.warning("settings changed (%s): starting afresh; the previous run is kept in %s",
                        shown, move_aside(folder))
    folder.mkdir(parents=True, exist_ok=True)
    tmp = record.with_name(RUN_FILE + ".part")
    tmp.write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, record)
    return resume
