"""speechfm's fairseq tasks from the launch layer's side: registering them, pointing a job's
`common.user_dir` at their plugin, and building the segment indexes a job will read."""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

from speechfm.core.errors import SpeechfmError

log = logging.getLogger(__name__)

PLUGIN_DIR = Path(__file__).parent / "plugin" / "speechfm_fairseq"
"""The fairseq user dir whose import registers the tasks (`engine/fairseq/indexed_audio.py`)."""
INDEXED_TASKS = ("speechfm_audio_pretraining", "speechfm_audio_finetuning")
"""`audio_pretraining` / `audio_finetuning` reading audio through the segment index."""


def register() -> None:
    """Register the tasks in this process (imports fairseq; a second call does nothing)."""
    import speechfm.engine.fairseq.indexed_audio  # noqa: F401


def uses_index(config: dict[str, Any]) -> bool:
    return (config.get("task") or {}).get("_name") in INDEXED_TASKS


def with_user_dir(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with `common.user_dir` set to this installation's plugin when its task is ours
    (a config written elsewhere, e.g. on a login node outside the job's container, names that
    machine's copy)."""
    user_dir = (config.get("common") or {}).get("user_dir")
    ours = bool(user_dir) and Path(user_dir).name == PLUGIN_DIR.name
    if user_dir and not ours and uses_index(config):
        raise SpeechfmError(f"common.user_dir={user_dir}: fairseq takes one user dir, and task "
                            f"{config['task']['_name']} needs speechfm's",
                            hint="use task._name=audio_pretraining / audio_finetuning with yours")
    if not uses_index(config) and not ours:
        return config
    config = copy.deepcopy(config)
    config.setdefault("common", {})["user_dir"] = str(PLUGIN_DIR)
    return config


def ensure_indexes(config: dict[str, Any]) -> list[Path]:
    """Build the segment index of every manifest the job reads (train and valid subsets) that
    is missing or stale, once, before any rank starts; returns the index folders."""
    if not uses_index(config):
        return []
    from speechfm.core.segment_index import open_index

    data = Path(config["task"]["data"])
    dataset = config.get("dataset") or {}
    splits = [dataset.get("train_subset", "train")]
    if not dataset.get("disable_validation"):
        splits += [s.strip() for s in str(dataset.get("valid_subset", "valid")).split(",")]
    folders = []
    for split in dict.fromkeys(splits):
        manifest = data / f"{split}.tsv"
        if os.path.exists(manifest):
            folders.append(open_index(manifest, build_missing=True).folder)
    return folders
