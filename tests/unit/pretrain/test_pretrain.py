"""Pre-training stage: presets, fairseq config composition, Slurm rendering, real CPU runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechfm.core.errors import SpeechfmError
from speechfm.core.presets import load_pretrain
from speechfm.core.sites import load_site
from speechfm.engine.fairseq import FairseqJob, compose_config, ranks_of
from speechfm.launch.rank import expand_hostlist, rank_environment
from speechfm.launch.slurm import layout, render_sbatch
from speechfm.pretrain import build_config
from tests.helpers import GOLDEN, ROOT, assert_lumi_network, run_speechfm
from tests.helpers.shard_manifest import make_shard_manifest


@pytest.fixture(scope="module")
def manifest(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shard_manifest(small_demo, tmp_path_factory.mktemp("shards"), copies=3)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the module: creating its tables costs seconds per store."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def test_preset_parameter_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each preset builds the model of its size (~95M / ~317M / ~1B), on the meta device."""
    import torch
    from fairseq.models.wav2vec import wav2vec2
    from omegaconf import OmegaConf

    # fairseq's BERT init copies weights through the CPU, impossible on meta; counts don't need it
    monkeypatch.setattr(wav2vec2, "init_bert_params", lambda module: None)
    expected = {"tiny": (0.9e6, 1.1e6), "base": (93e6, 97e6), "large": (310e6, 325e6),
                "xlarge": (0.94e9, 1.05e9)}
    for name, (low, high) in expected.items():
        model_cfg = compose_config(load_pretrain(name)["fairseq"])["model"]
        cfg = OmegaConf.merge(OmegaConf.structured(wav2vec2.Wav2Vec2Config), model_cfg)
        with torch.device("meta"):
            model = wav2vec2.Wav2Vec2Model(cfg)
        count = sum(p.numel() for p in model.parameters())
        assert low <= count <= high, (name, count)


@pytest.mark.parametrize("name, values", [
    ("base", {"model.encoder_layers": 12, "model.final_dim": 256, "optimization.lr": [6e-4],
              "lr_scheduler.warmup_updates": 3000, "optimization.max_update": 125000,
              "dataset.max_tokens": 2800000, "model.latent_temp": [2.0, 0.5, 0.999995],
              "model.feature_grad_mult": 0.1, "model.dropout": 0.1}),
    ("large", {"model.encoder_embed_dim": 1024, "model.layer_norm_first": True,
               "model.extractor_mode": "layer_norm", "optimization.lr": [4e-4],
               "lr_scheduler.warmup_updates": 5000, "optimization.max_update": 166667,
               "dataset.max_tokens": 1800000, "model.dropout_input": 0.0}),
    ("xlarge", {"model.encoder_layers": 48, "model.encoder_ffn_embed_dim": 5120,
                "model.final_dim": 1024, "optimization.lr": [1e-4],
                "lr_scheduler.warmup_updates": 12500, "optimization.max_update": 390625,
                "dataset.max_tokens": 960000, "model.dropout_features": 0.1,
                "model.attention_dropout": 0.0}),
])
def test_presets_hold_the_reference_hyperparameters(name: str, values: dict) -> None:
    cfg = compose_config(load_pretrain(name)["fairseq"])
    for key, value in values.items():
        section, field = key.split(".")
        assert cfg[section][field] == value, key
    assert cfg["criterion"]["loss_weights"] == [0.1, 10]
    assert (cfg["task"]["min_sample_size"], cfg["task"]["max_sample_size"]) == (32000, 960000)
    assert cfg["checkpoint"]["save_interval_updates"] == 500
    assert cfg["distributed_training"]["ddp_backend"] == "legacy_ddp"


def test_world_size_update_freq_and_overrides(manifest: Path, tmp_path: Path) -> None:
    base = load_pretrain("base")
    cfg = build_config(base, manifest, tmp_path, gpus=8, cpu=False, overrides=["common.seed=7"])
    assert cfg["optimization"]["update_freq"] == [64]  # 512 reference GPUs simulated on 8
    assert cfg["distributed_training"]["distributed_world_size"] == 8
    assert cfg["distributed_training"]["distributed_backend"] == "nccl"
    assert cfg["common"]["seed"] == 7 and cfg["common"]["fp16"] is True
    assert cfg["task"]["data"] == str(manifest.resolve())
    cpu = build_config(load_pretrain("tiny"), manifest, tmp_path, gpus=2, cpu=True)
    assert cpu["distributed_training"]["distributed_backend"] == "gloo"
    assert cpu["distributed_training"]["distributed_init_method"] == "env://"
    assert cpu["common"]["fp16"] is False and cpu["optimization"]["update_freq"] == [1]
    with pytest.raises(SpeechfmError, match="cannot simulate 512 GPUs with 3"):
        build_config(base, manifest, tmp_path, gpus=3, cpu=False)
    with pytest.raises(SpeechfmError, match="invalid fairseq configuration"):
        build_config(base, manifest, tmp_path, gpus=1, cpu=False, overrides=["model.nope=1"])


def test_bad_manifest_is_one_clear_line(tmp_path: Path, capsys) -> None:
    from speechfm.cli import main

    (tmp_path / "train.tsv").write_text(f"{tmp_path}\nshards/a.tar:512:100\t16000\n")
    status = main(["pretrain", "--preset", "tiny", "--manifest", str(tmp_path),
                   "--out", str(tmp_path / "run"), "--cpu"])  # in-process: parse, recipe, error
    assert status == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        (f"speechfm pretrain: error: {tmp_path}/train.tsv: first entry points to a missing file "
         f"{tmp_path}/shards/a.tar")]
    assert not (tmp_path / "run").exists()
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "a.tar").write_bytes(b"")
    with pytest.raises(SpeechfmError, match="missing valid.tsv"):
        build_config(load_pretrain("tiny"), tmp_path, tmp_path / "run", gpus=1, cpu=True)


def test_the_recipe_runs_in_process_and_the_site_decides(manifest: Path, tmp_path: Path) -> None:
    """`PretrainConfig` + `run`, no subprocess: `updates` is the length, the site (not a flag)
    decides sbatch or local ranks, and each rank is `launch.rank` on the fairseq worker."""
    import json

    import yaml

    from speechfm.pretrain.recipe import PretrainConfig, run

    config = PretrainConfig(preset="tiny", manifest=manifest, out=tmp_path / "slurm", updates=7,
                            gpus=2, site="local-slurm", dry_run=True, tracking_uri="none")
    result = run(config)
    assert result.status == 0 and result.job_id is None
    fairseq = yaml.safe_load((result.save_dir / "config.yaml").read_text())
    assert fairseq["optimization"]["max_update"] == 7
    assert fairseq["distributed_training"]["distributed_world_size"] == 2
    script = (result.save_dir / "job.sbatch").read_text()
    assert f"-m speechfm.launch.rank {result.save_dir / 'ranks.json'} " in script
    assert "#SBATCH --signal=USR1@60" in script  # fairseq ranks checkpoint on the signal
    ranks = json.loads((result.save_dir / "ranks.json").read_text())
    assert ranks["entry"] == "speechfm.engine.fairseq.worker:run" and ranks["world_size"] == 2
    assert ranks["args"] == {"job": str(result.save_dir / "job.json")}

    here = run(config.model_copy(update={"site": "local", "out": tmp_path / "here"}))
    assert (here.save_dir / "ranks.json").exists() and not (here.save_dir / "job.sbatch").exists()
    with pytest.raises(SpeechfmError, match="--updates 7 and --set optimization.max_update=9"):
        run(config.model_copy(update={"overrides": ["optimization.max_update=9"]}))


def test_rendezvous_from_slurm_without_scontrol() -> None:
    assert expand_hostlist("nid[005001-005003,005010],uan01") == [
        "nid005001", "nid005002", "nid005003", "nid005010", "uan01"]
    assert expand_hostlist("localhost") == ["localhost"]
    env = rank_environment({"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1",
                            "SLURM_JOB_NODELIST": "nid[007960-007961]", "SLURM_JOB_ID": "4242"})
    assert env == {"RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1",
                   "MASTER_ADDR": "nid007960", "MASTER_PORT": str(20000 + 4242)}


@pytest.mark.parametrize("gpus, golden", [(512, "pretrain_lumi_512.sbatch"),
                                          (4, "pretrain_lumi_4.sbatch")])
def test_lumi_sbatch_matches_golden_file(gpus: int, golden: str) -> None:
    site = load_site("lumi")
    job = FairseqJob(save_dir=Path("/scratch/project_465000000/runs/base"), world_size=gpus,
                     cpu=False, experiment="pretrain", run_name="base",
                     tracking_uri="sqlite:////scratch/project_465000000/mlflow.db")
    script = render_sbatch(ranks_of(job), site, Path("/scratch/project_465000000"))
    if os.environ.get("SPEECHFM_UPDATE_GOLDEN"):
        (GOLDEN / golden).write_text(script)
    assert script == (GOLDEN / golden).read_text()
    assert "scontrol show" not in script
    assert_lumi_network(script)
    with pytest.raises(SpeechfmError, match="do not fill whole nodes"):
        layout(site, 12)



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
