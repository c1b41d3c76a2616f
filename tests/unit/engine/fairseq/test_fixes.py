"""The fixes that keep fairseq 0.12 running on torch 2.13 (`engine.fairseq.fixes`): each test
shows the failure without the fix and its absence with it, in a fresh interpreter (the fixes
change process-wide state: an environment variable, a fairseq module attribute)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    environ = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, check=False, timeout=300, env={**environ, **(env or {})})


@pytest.mark.parametrize("fixed", [False, True])
def test_fairseq_checkpoints_with_pickled_settings_load_only_with_the_fix(fixed: bool) -> None:
    """fairseq checkpoints pickle their settings (an argparse Namespace, omegaconf): torch >= 2.6
    loads with weights_only=True by default and refuses them; fairseq's loaders call
    torch.load without the argument, as here."""
    done = run(f"""
        import argparse, tempfile, torch
        from speechfm.engine.fairseq.fixes import apply_torch_fixes
        path = tempfile.mktemp(suffix=".pt")
        torch.save({{"args": argparse.Namespace(arch="wav2vec2"), "model": {{}}}}, path)
        if {fixed}:
            apply_torch_fixes(cpu=True)
        state = torch.load(path, map_location="cpu")  # as fairseq's load_checkpoint_to_cpu
        print("loaded", state["args"].arch)
    """)
    if fixed:
        assert done.returncode == 0 and "loaded wav2vec2" in done.stdout, done.stderr[-2000:]
    else:
        assert done.returncode != 0 and "weights_only" in done.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the failure is CPU-only")
@pytest.mark.parametrize("fixed", [False, True])
def test_all_gather_list_works_on_cpu_ranks_only_with_the_fix(fixed: bool) -> None:
    """fairseq's all_gather_list (validation stats, `--distributed-world-size` > 1 on CPU)
    allocates torch.cuda buffers; the fix gathers the same objects with all_gather_object."""
    done = run(f"""
        import os, tempfile, torch.distributed as dist
        from speechfm.engine.fairseq.fixes import apply_torch_fixes
        dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0,
                                world_size=1)
        if {fixed}:
            apply_torch_fixes(cpu=True)
        from fairseq.distributed import utils
        print("gathered", utils.all_gather_list({{"loss": 1.5}}, group=dist.group.WORLD))
    """)
    if fixed:
        assert done.returncode == 0 and "gathered [{'loss': 1.5}]" in done.stdout, done.stderr
    else:
        assert done.returncode != 0 and "cuda" in done.stderr.lower()
