"""`speechfm pretrain` end to end on the tiny preset (CPU): stopped by SIGTERM and resumed with one
MLflow run, two gloo workers, two srun tasks on a real Slurm, a damaged checkpoint_last.pt, and
through the segment index (then resumed by plain fairseq-hydra-train)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_speechfm
from tests.helpers.shard_manifest import make_shard_manifest


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the module: creating its tables costs seconds per store."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _num_updates(checkpoint: Path) -> int:
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return state["optimizer_history"][-1]["num_updates"]


@pytest.mark.slow
def test_tiny_pretrain_stops_on_sigterm_resumes_and_tracks_one_mlflow_run(
        manifest: Path, tmp_path: Path, tracking: str) -> None:
    import mlflow

    out, uri = tmp_path / "run", tracking
    args = ["pretrain", "--preset", "tiny", "--manifest", manifest, "--out", out, "--cpu",
            "--tracking-uri", uri, "--experiment", "pretrain-test",
            "--updates", "8", "--set", "checkpoint.save_interval_updates=1000"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-m", "speechfm", *map(str, args)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = out / "train.log"
    deadline = time.monotonic() + 300
    while not (log.exists() and '"num_updates": "2"' in log.read_text()):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    stopped_at = _num_updates(out / "checkpoint_last.pt")
    assert 2 <= stopped_at < 8
    assert (out / "STOPPED").read_text().split() == ["SIGTERM", str(stopped_at)]

    result = run_speechfm(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"@ {stopped_at} updates" in log.read_text()  # "Loaded checkpoint ... @ N updates"
    assert _num_updates(out / "checkpoint_last.pt") == 8
    assert not (out / "STOPPED").exists()
    config = (out / "config.yaml").read_text()
    assert "encoder_embed_dim: 128" in config and f"save_dir: {out}" in config

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("pretrain-test").experiment_id])
    assert len(runs) == 1  # the resumed job continued its run
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model.encoder_layers"] == "4"
    assert run.data.params["task.data"] == str(manifest.resolve())
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_inner/loss")]
    assert min(steps) <= stopped_at < max(steps) == 8
    for key in ("accuracy", "prob_perplexity", "code_perplexity", "temp", "lr", "wps", "gnorm"):
        assert f"train_inner/{key}" in run.data.metrics, key
    assert "valid/loss" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "checkpoints.json"} <= artifacts
    assert run.data.tags["speechfm.checkpoint_dir"] == str(out)


@pytest.mark.slow
def test_tiny_pretrain_with_two_gloo_workers(manifest: Path, tmp_path: Path,
                                             tracking: str) -> None:
    out = tmp_path / "run"
    result = run_speechfm("pretrain", "--preset", "tiny", "--manifest", manifest, "--out", out,
                          "--cpu", "--gpus", "2", "--tracking-uri", tracking, "--updates", "4",
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "distributed init (rank 1)" in output  # rank 1 logs to the console only
    log = (out / "train.log").read_text()
    assert "distributed init (rank 0)" in log and "distributed init (rank 1)" not in log
    assert '"bsz": "6"' in log  # 2 ranks x 3 crops per batch
    assert _num_updates(out / "checkpoint_last.pt") == 4


@pytest.mark.slow
def test_tiny_pretrain_as_two_srun_tasks_on_slurm(manifest: Path, tmp_path: Path, tracking: str,
                                                  slurm_cluster) -> None:
    out = tmp_path / "run"
    result = run_speechfm("pretrain", "--preset", "tiny", "--manifest", manifest, "--out", out,
                          "--gpus", "2", "--site", "local-slurm", "--wait",
                          "--tracking-uri", tracking, "--updates", "4", cwd=tmp_path,
                          env={"SLURM_CONF": slurm_cluster.env["SLURM_CONF"]})
    assert result.returncode == 0, result.stderr[-3000:]
    job_id = int(result.stdout.strip())
    assert slurm_cluster.wait_job(job_id) == "COMPLETED"
    script = (out / "job.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "--gpus-per-node" not in script
    output = (out / f"slurm-{job_id}.out").read_text()
    assert "distributed init (rank 0)" in output and "distributed init (rank 1)" in output
    assert "done training" in (out / "train.log").read_text()
    assert _num_updates(out / "checkpoint_last.pt") == 4


@pytest.mark.slow
def test_a_checkpoint_last_cut_short_resumes_from_the_newest_loadable_one(
        manifest: Path, tmp_path: Path) -> None:
    """A kill during fairseq's copy onto checkpoint_last.pt (here: the file cut in half, and the
    newest interval and best checkpoints too) resumes from the newest checkpoint that loads,
    with a warning; never from update 0."""
    out = tmp_path / "run"
    args = ["pretrain", "--preset", "tiny", "--manifest", manifest, "--out", out, "--cpu",
            "--tracking-uri", "none", "--set", "checkpoint.save_interval_updates=2"]
    first = run_speechfm(*args, "--updates", "4", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (two,) = out.glob("checkpoint_*_2.pt")
    (four,) = out.glob("checkpoint_*_4.pt")
    for damaged in (out / "checkpoint_last.pt", four, out / "checkpoint_best.pt"):
        os.truncate(damaged, damaged.stat().st_size // 2)
    again = run_speechfm(*args, "--updates", "6", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    output = again.stdout + again.stderr
    assert f"resuming from {two.name} (update 2) instead" in output
    assert "@ 2 updates)" in (out / "train.log").read_text()  # fairseq's "Loaded checkpoint"
    assert _num_updates(out / "checkpoint_last.pt") == 6
    assert (out / "checkpoint_last.pt.damaged").exists()


@pytest.mark.slow
def test_tiny_pretrain_through_the_segment_index(small_demo: Path, tmp_path: Path) -> None:
    """`speechfm pretrain` with the indexed task (the launcher builds the indexes), then plain
    `fairseq-hydra-train` on the config it wrote, resuming from its checkpoint."""
    import torch

    manifest = make_shard_manifest(small_demo, tmp_path / "shards", copies=2)
    out = tmp_path / "run"
    proc = run_speechfm("pretrain", "--preset", "tiny", "--manifest", manifest, "--out", out,
                        "--cpu", "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}",
                        "--set", "task._name=speechfm_audio_pretraining",
                        "--set", "optimization.max_update=4", "--set", "dataset.num_workers=1",
                        cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "train.log").read_text()
    assert "task: IndexedAudioPretrainingTask" in log and "segment index" in log
    assert (manifest / "train.idx").is_dir() and (manifest / "valid.idx").is_dir()

    def updates() -> int:
        state = torch.load(out / "checkpoint_last.pt", map_location="cpu", weights_only=False)
        return state["optimizer_history"][-1]["num_updates"]

    assert updates() == 4
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    fairseq = Path(sys.executable).with_name("fairseq-hydra-train")
    # a copy: hydra would check a file named config.yaml against fairseq's own schema 'config'
    shutil.copy(out / "config.yaml", out / "plain.yaml")
    proc = subprocess.run([str(fairseq), "--config-dir", str(out), "--config-name", "plain",
                           "optimization.max_update=6"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "task: IndexedAudioPretrainingTask" in proc.stdout + proc.stderr
    assert updates() == 6
