"""`prepare`: plan units, build the missing ones in parallel worker processes, then merge the
completed units into manifests, rejects and statistics."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from speechfm.core.errors import SpeechfmError
from speechfm.core.manifest import check_root
from speechfm.prepare import manifests, stats
from speechfm.prepare.columns import read_columns
from speechfm.prepare.config import PrepareConfig
from speechfm.prepare.discover import Unit, plan_units
from speechfm.prepare.units import process_unit, read_done, unit_dir

log = logging.getLogger(__name__)

REJECTS_FILE = "rejects.jsonl"


def _die_with_parent() -> None:
    """Worker initializer: a worker must not outlive a killed parent and race a re-run."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the call above
        os._exit(1)


def pending_units(archive: Path, out: Path, config: PrepareConfig) -> tuple[list[Unit], list[Unit]]:
    """(all units, units still to build). A unit is done when its marker names the same files;
    a marker written with other settings is an error, not a silent mix."""
    if not archive.is_dir():
        raise SpeechfmError("archive folder not found", path=archive)
    units = plan_units(archive, config.unit)
    if not units:
        raise SpeechfmError("no media files found", path=archive,
                            hint="expected channel/YYYY/MM/DD/*.ts")
    todo = []
    for unit in units:
        done = read_done(out, unit)
        if done is None or done["files"] != list(unit.files):
            todo.append(unit)
        elif config.recorded_settings(done["config"]) != config.unit_settings():
            raise SpeechfmError(f"unit {unit.key} was prepared with other settings", path=out,
                                hint="prepare into a new output folder")
    return units, todo


def build_units(archive: Path, out: Path, units: list[Unit], config: PrepareConfig,
                workers: int) -> None:
    """Build `units` with `workers` processes (largest first, so the pool ends evenly)."""
    order = sorted(units, key=lambda u: -u.size)
    bar = tqdm(total=len(order), desc="units", unit="unit", disable=None)
    if workers <= 1:
        for unit in order:
            process_unit(archive, out, unit, config)
            bar.update()
    else:
        with ProcessPoolExecutor(workers, initializer=_die_with_parent) as pool:
            futures = [pool.submit(process_unit, archive, out, u, config) for u in order]
            # every worker is forked by now (a fork during an import in a thread could deadlock)
            threading.Thread(target=stats.preload_plotting, daemon=True).start()
            for fut in as_completed(futures):
                fut.result()
                bar.update()
    bar.close()


def merge(out: Path, units: list[Unit], config: PrepareConfig, workers: int = 2
          ) -> dict[str, Any]:
    """Manifests (with their segment indexes), rejects and statistics from the units'
    done-markers and indexes; per segment it holds only compact columns (`columns.py`)."""
    check_root(out)
    records = []
    for unit in units:
        record = read_done(out, unit)
        if record is None:
            raise SpeechfmError(f"unit {unit.key} is not complete", path=unit_dir(out, unit),
                                hint="run 'speechfm prepare' again to finish it")
        records.append(record)
    cols = read_columns([unit_dir(out, unit) for unit in units], records, workers)
    counts = manifests.write_manifests(out, cols, config.valid_hours, config.valid_share,
                                       config.seed)
    rejects = [{"channel": r["channel"], "unit": r["unit"], **x} for r in records
               for x in r["rejects"]]
    tmp = out / (REJECTS_FILE + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in rejects)
    os.replace(tmp, out / REJECTS_FILE)
    summary = stats.compute(records, cols.frames, config.max_seconds)
    stats.write(summary, out)
    return {"units": len(units), "segments": len(cols), "manifests": counts,
            "hours_in": round(summary["total"].get("hours_in", 0.0), 4),
            "hours_kept": round(summary["total"].get("hours_kept", 0.0), 4),
            "rejects": rejects}


def prepare(archive: Path, out: Path, config: PrepareConfig, workers: int = 1,
            build: Callable[[Path, Path, list[Unit], PrepareConfig], None] | None = None,
            ) -> dict[str, Any]:
    """Prepare `archive` into `out`; units already complete are kept. `build` replaces the local
    process pool (the Slurm path passes its own)."""
    out.mkdir(parents=True, exist_ok=True)
    check_root(out)
    units, todo = pending_units(archive, out, config)
    log.info("%d units, %d to build", len(units), len(todo))
    if todo:
        if build is None:
            build_units(archive, out, todo, config, workers)
        else:
            build(archive, out, todo, config)
    summary = merge(out, units, config, max(1, workers))
    summary["built"] = len(todo)
    return summary
