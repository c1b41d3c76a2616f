"""The fixes that keep fairseq 0.12 running on torch 2.13 (`engine.fairseq.fixes`): each test
shows, in one fresh interpreter (the fixes change process-wide state: an environment variable,
a fairseq module attribute), the failure without the fix and its absence after it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, check=False, timeout=300, env=env)


def test_fairseq_checkpoints_with_pickled_settings_load_only_with_the_fix() -> None:
    """fairseq checkpoints pickle their settings (an argparse Namespace, omegaconf): torch >= 2.6
    loads with weights_only=True by default and refuses them; fairseq's loaders call
    torch.load without the argument, as here."""
    done = run("""
        import argparse, pickle, tempfile, torch
        from speechfm.engine.fairseq.fixes import apply_torch_fixes
        path = tempfile.mktemp(suffix=".pt")
        torch.save({"args": argparse.Namespace(arch="wav2vec2"), "model": {}}, path)
        try:
            torch.load(path, map_location="cpu")
        except pickle.UnpicklingError as exc:
            print("without the fix:", "weights_only" in str(exc))
        apply_torch_fixes(cpu=True)
        print("with the fix:", torch.load(path, map_location="cpu")["args"].arch)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["without the fix: True", "with the fix: wav2vec2"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the failure is CPU-only")
def test_all_gather_list_works_on_cpu_ranks_only_with_the_fix() -> None:
    """fairseq's all_gather_list (validation stats of CPU ranks) allocates torch.cuda buffers;
    the fix gathers the same objects with all_gather_object."""
    done = run("""
        import tempfile, torch.distributed as dist
        from fairseq.distributed import utils
        from speechfm.engine.fairseq.fixes import apply_torch_fixes
        dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0,
                                world_size=1)
        try:
            utils.all_gather_list({"loss": 1.5}, group=dist.group.WORLD)
        except TypeError as exc:  # torch.cuda.ByteTensor is not available on a CPU build
            print("without the fix:", "torch.cuda.ByteTensor" in str(exc))
        apply_torch_fixes(cpu=True)
        print("with the fix:", utils.all_gather_list({"loss": 1.5}, group=dist.group.WORLD))
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["without the fix: True",
                                        "with the fix: [{'loss': 1.5}]"]
