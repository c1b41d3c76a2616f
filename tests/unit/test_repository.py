"""The repository holds source, settings and docs only: no pipeline output ever goes into git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

ARTIFACT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".npz", ".onnx")
MAX_BYTES = 1_000_000
# deliberate fixtures and data shipped with the package, each named with its reason
ALLOWED: dict[str, str] = {}


def tracked_files() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an sdist or an installed copy): nothing is tracked")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [name for name in out.stdout.decode().split("\0") if name]


def offending(names: list[str], root: Path) -> list[str]:
    """Tracked files that are weights, optimizer state or any file over MAX_BYTES."""
    bad = []
    for name in names:
        if name in ALLOWED:
            continue
        path = root / name
        if name.endswith(ARTIFACT_SUFFIXES):
            bad.append(f"{name} (a checkpoint, weights or state file)")
        elif path.is_file() and path.stat().st_size > MAX_BYTES:
            bad.append(f"{name} ({path.stat().st_size:,} bytes > {MAX_BYTES:,})")
    return bad


def test_git_tracks_no_run_outputs():
    bad = offending(tracked_files(), ROOT)
    assert not bad, "git tracks pipeline outputs or large files:\n  " + "\n  ".join(bad)


def test_pipeline_output_folders_are_ignored():
    probes = ["runs/pretrain/checkpoint_last.pt", "models/pretrained/model.safetensors",
              "reports/lur/demo/lur_state.npz", "runs/finetune/checkpoints/x/optimizer.pt"]
    out = subprocess.run(["git", "check-ignore", "--no-index", *probes], cwd=ROOT, check=False,
                         capture_output=True, text=True)
    assert sorted(out.stdout.split()) == sorted(probes)


def test_the_check_finds_what_it_looks_for(tmp_path):
    (tmp_path / "big.txt").write_bytes(b"x" * (MAX_BYTES + 1))
    (tmp_path / "small.txt").write_text("ok")
    (tmp_path / "w.safetensors").write_bytes(b"")
    bad = offending(["big.txt", "small.txt", "w.safetensors"], tmp_path)
    assert [b.split()[0] for b in bad] == ["big.txt", "w.safetensors"]
