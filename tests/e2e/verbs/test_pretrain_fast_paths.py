"""`speechfm pretrain` end to end with every fairseq fast path on: a tiny CPU run that trains and
resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.clips import audio_manifest


@pytest.mark.slow
def test_tiny_pretrain_with_every_fast_path_trains_and_resumes(tmp_path: Path) -> None:
    from tests.helpers import run_speechfm

    manifest = audio_manifest(tmp_path / "data", [1.2, 1.5, 1.8, 2.0, 2.2, 2.5, 1.1, 1.9]).parent
    (manifest / "valid.tsv").write_text("\n".join(manifest.joinpath("train.tsv").read_text()
                                                  .splitlines()[:3]) + "\n")
    out = tmp_path / "run"
    switches = [f"fast.{name}=true" for name in ("sdpa_attention", "fused_adam",
                                                 "precompute_masks", "sync_free", "bucket_batches")]
    settings = [*switches, "fast.loader_threads=1", "dataset.num_workers=1",
                "dataset.max_tokens=40000",
                "task._name=speechfm_audio_pretraining"]  # the segment-index dataset of base/large
    args = ["pretrain", "--preset", "tiny", "--manifest", manifest, "--out", out, "--cpu",
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            *[x for item in settings for x in ("--set", item)]]
    result = run_speechfm(*args, "--set", "optimization.max_update=6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (out / "train.log").read_text()
    assert ("fast paths on: sdpa_attention, fused_adam, precompute_masks, sync_free, "
            "bucket_batches, loader_threads") in log
    assert "fast paths in the model: sdpa_attention x4, sync_free x1" in log
    state = torch.load(out / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert state["last_optimizer_state"]["param_groups"][0]["fairseq_steps"] == 6
    assert "fast" not in state["cfg"]
    result = run_speechfm(*args, "--set", "optimization.max_update=8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(out / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert state["last_optimizer_state"]["param_groups"][0]["fairseq_steps"] == 8
