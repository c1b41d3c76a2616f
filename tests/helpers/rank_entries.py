"""Entry points for `launch.ranks` tests: what a rank sees, and a rank that fails."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def record(out: str) -> int:
    """Write this rank's environment to OUT/rank<RANK>.json."""
    env = {k: os.environ.get(k) for k in KEYS}
    (Path(out) / f"rank{env['RANK']}.json").write_text(json.dumps(env))
    return 0


def fail_one(status: int, hang_seconds: float) -> int:
    """Rank 1 fails with `status` at once; the others would wait `hang_seconds` (as ranks wait in
    a collective for a dead one)."""
    if os.environ["RANK"] == "1":
        return status
    time.sleep(hang_seconds)
    return 0
