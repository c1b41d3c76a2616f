"""The fairseq config of a pre-training run from a preset (`speechfm.core.presets`) and manifests."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from speechfm.core.errors import SpeechfmError
from speechfm.engine.fairseq.fastpaths import FAST_SECTION, FastPaths
from speechfm.engine.fairseq.job import compose_config, distributed_settings, update_freq

SPLITS = ("train", "valid")


def fast_settings(preset: dict[str, Any], items: dict[str, str]) -> dict[str, Any]:
    """The job's fast-path switches: the preset's `fast:` block, then `fast.KEY=VALUE` items
    (unknown names or wrong types fail here, before anything starts)."""
    return asdict(FastPaths.from_dict({**(preset.get(FAST_SECTION) or {}), **items},
                                      where=f"the preset's {FAST_SECTION}: block or "
                                            f"--set {FAST_SECTION}.KEY=VALUE"))


def check_manifest(manifest: Path) -> Path:
    """The manifest directory must hold fairseq's train.tsv and valid.tsv with a usable root."""
    manifest = manifest.resolve()
    for split in SPLITS:
        tsv = manifest / f"{split}.tsv"
        if not tsv.is_file():
            raise SpeechfmError(f"missing {split}.tsv", path=manifest,
                                hint="run 'speechfm prepare' or point --manifest at its manifests/")
        with tsv.open(encoding="utf-8") as f:
            root, first = f.readline().strip(), f.readline().strip()
        if not root or not Path(root).is_dir():
            raise SpeechfmError(f"first line must be an existing root directory, got '{root}'",
                                path=tsv)
        if ":" in root:
            raise SpeechfmError("the root directory must not contain ':' (fairseq splits on it)",
                                path=tsv)
        if not first:
            hint = ("validation files are whole source files drawn per channel: a channel needs "
                    "two or more source files to give one") if split == "valid" else None
            raise SpeechfmError("no segments listed", path=tsv, hint=hint)
        member = first.split("\t")[0].split(":")[0]
        if not (Path(root) / member).exists():
            raise SpeechfmError(f"first entry points to a missing file {Path(root) / member}",
                                path=tsv)
    return manifest


LENGTH_KEY = "optimization.max_update"
"""What `updates` (`--updates`, `pretrain.updates`) sets: the run's length in updates."""


def build_config(preset: dict[str, Any], manifest: Path, save_dir: Path, gpus: int, cpu: bool,
                 simulate_gpus: int | None = None, overrides: list[str] = (),
                 updates: int | None = None) -> dict[str, Any]:
    """The full fairseq config of a pre-training run (`updates`: its length, None: the
    preset's); overrides win over everything else."""
    simulate = simulate_gpus if simulate_gpus is not None else preset.get("simulate_gpus")
    run: dict[str, Any] = {
        "task": {"data": str(check_manifest(manifest))},
        "checkpoint": {"save_dir": str(save_dir.resolve())},
        "optimization": {"update_freq": [update_freq(gpus, simulate)]},
    }
    if updates is not None:
        if updates < 1:
            raise SpeechfmError(f"--updates must be at least 1, not {updates}")
        given = [item for item in overrides if item.partition("=")[0].strip() == LENGTH_KEY]
        if given:
            raise SpeechfmError(f"--updates {updates} and --set {given[0]} both set the length",
                                hint="use --updates (pretrain.updates in params.yaml)")
        run["optimization"]["max_update"] = updates
    return compose_config(preset["fairseq"], run, distributed_settings(gpus, cpu),
                          overrides=list(overrides))
