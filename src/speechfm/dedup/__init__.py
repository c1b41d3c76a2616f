"""`speechfm dedup`: find repeated broadcast content (adverts, jingles, reruns) among the prepared
segments by their fingerprints, keep the earliest broadcast of each group, and write training
manifests without the other copies beside the originals.

Only training rows are dropped; the validation manifests are copied unchanged. Disabled
(`enabled: false`), the manifests pass through as they are, so the pipeline keeps its shape.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from speechfm.core import segment_index
from speechfm.core.curves import write_summary
from speechfm.core.errors import SpeechfmError
from speechfm.core.manifest import MANIFESTS_DIR
from speechfm.dedup.catalog import read_catalog
from speechfm.dedup.config import DedupConfig

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_PNG = "report.png"
WORK_PREFIX = "keys-"  # OUT/keys-*/: the key partitions while the search runs (~10 bytes a key)


def manifest_rows(path: Path) -> set[str]:
    """The `shard:offset:size` entries of a fairseq manifest."""
    with open(path, encoding="utf-8") as f:
        f.readline()
        return {line.split("\t", 1)[0] for line in f if line.strip()}


def filter_manifest(src: Path, dst: Path, drop: set[str]) -> tuple[int, int]:
    """Write manifest `src` to `dst` (atomically) without the rows in `drop`, with its segment
    index (the rows kept of `src`'s index, built first if missing); (rows in, rows out)."""
    tmp = dst.with_name(dst.name + ".part")
    keep = []
    with open(src, encoding="utf-8") as f, open(tmp, "w", encoding="utf-8") as g:
        g.write(f.readline())
        for line in f:
            if line.strip():  # rows as FileAudioDataset and the segment index count them
                keep.append(line.split("\t", 1)[0] not in drop)
                if keep[-1]:
                    g.write(line)
    os.replace(tmp, dst)
    index = segment_index.open_index(src, build_missing=True)
    rows = np.asarray(keep, dtype=bool)
    if index.rows != len(rows):
        raise SpeechfmError(f"the segment index has {index.rows} rows, the manifest {len(rows)}",
                            path=index.folder, hint=segment_index.HINT)
    path_ids = np.repeat(index.run_path, np.diff(np.r_[index.run_start, index.rows]))
    paths = [index.path(i) for i in range(len(index.path_offsets) - 1)]
    segment_index.write_index(dst, paths, path_ids, index.offsets, index.sizes, index.frames,
                              rows=rows)
    return len(rows), int(rows.sum())


def deduplicate(prepared: Path, out: Path, config: DedupConfig,
                archive: Path | None = None) -> dict[str, Any]:
    """Deduplicate `prepared` (prepare's output folder) into OUT/manifests, OUT/report.json and
    OUT/report.png; with ground truth under `archive` (the demo), the report scores the groups."""
    from speechfm.dedup import report as reports

    clock = time.perf_counter()
    src = prepared / MANIFESTS_DIR
    if not (src / "train.tsv").is_file() or not (src / "valid.tsv").is_file():
        raise SpeechfmError("no train.tsv / valid.tsv manifests", path=src,
                            hint="run 'speechfm prepare' first")
    catalog = read_catalog(prepared, need_fingerprints=config.enabled)
    timings = {"catalog": time.perf_counter() - clock}
    found = None
    rep = np.full(len(catalog), -1, dtype=np.int64)
    if config.enabled and len(catalog):
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(f"{WORK_PREFIX}*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix=WORK_PREFIX, dir=out) as work:
            from speechfm.dedup.search import search

            found = search(catalog, config, Path(work))
        rep = found.rep
        timings |= found.seconds
    valid = manifest_rows(src / "valid.tsv")
    drop_ids = [int(s) for s in np.flatnonzero((rep >= 0) & (rep != np.arange(len(rep))))
                if catalog.manifest_path(int(s)) not in valid]
    drop = {catalog.manifest_path(s) for s in drop_ids}
    dst = out / MANIFESTS_DIR
    dst.mkdir(parents=True, exist_ok=True)
    rows, kept = filter_manifest(src / "train.tsv", dst / "train.tsv", drop)
    if rows - kept != len(drop):
        raise SpeechfmError(f"{len(drop) - rows + kept} segments to drop are not rows of "
                            "train.tsv: the manifests are not those of these shards", path=src,
                            hint="run 'speechfm prepare' again to rewrite them")
    names = {p.name for p in src.glob("valid*.tsv")}
    for stale in [*dst.glob("*.tsv"), *dst.glob(f"*{segment_index.SUFFIX}")]:
        if stale.with_suffix(".tsv").name not in names | {"train.tsv"}:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    for name in sorted(names):  # validation: the same rows, the same index
        filter_manifest(src / name, dst / name, set())
    quality = None
    if archive is not None and found is not None:
        from speechfm.dedup.truth import evaluate, read_truth

        truth = read_truth(archive)
        if truth:
            quality = evaluate(catalog, rep, truth, config.min_overlap)
    timings["total"] = time.perf_counter() - clock
    summary = reports.build(catalog, rep, np.asarray(drop_ids, dtype=np.int64), valid, config,
                            found, quality, timings)
    summary["manifests"] = {"train_in": rows, "train_out": kept}
    reports.write(summary, out / REPORT_JSON, out / REPORT_PNG)
    truth = summary.get("truth", {})
    write_summary(out, {"hours_removed": summary["hours_removed"],
                        "precision": truth.get("precision"), "recall": truth.get("recall")})
    return summary


__all__ = ["DedupConfig", "deduplicate"]
