"""Ground truth beside an archive's files (`<name>.truth.json`, written by `speechfm synth`): the
one reader that prepare's VAD scoring and dedup's scoring share.

A real archive may hold files of that name in another schema, or cut short: each is skipped with
a warning naming it and the reason, never a crash (the scoring runs after the data is built).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speechfm.core.constants import GROUND_TRUTH_SUFFIX

log = logging.getLogger(__name__)


class TruthError(Exception):
    """A ground-truth file that cannot be used (the message says why)."""


def load(path: Path) -> dict[str, Any]:
    """One ground-truth file: a JSON object naming its source (`file`, relative to the archive).
    Raises TruthError saying what is wrong with it."""
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TruthError(f"not readable JSON ({exc})") from None
    if not isinstance(truth, dict):
        raise TruthError("not a JSON object")
    if not isinstance(truth.get("file"), str):
        raise TruthError("no 'file' naming its source")
    return truth


def read_all(archive: Path, purpose: str,
             check: Callable[[dict[str, Any]], None] | None = None,
             ) -> tuple[list[dict[str, Any]], int]:
    """Every usable ground-truth file under `archive` (sorted by path) and how many were skipped;
    `check` raises TruthError for one its `purpose` (e.g. "VAD quality") cannot use."""
    usable, skipped = [], 0
    for path in sorted(archive.rglob(f"*{GROUND_TRUTH_SUFFIX}")):
        try:
            truth = load(path)
            if check is not None:
                check(truth)
        except TruthError as exc:
            skipped += 1
            log.warning("%s: skipped for %s, not a ground-truth file of the demo's schema: %s",
                        path, purpose, exc)
            continue
        usable.append(truth)
    return usable, skipped
