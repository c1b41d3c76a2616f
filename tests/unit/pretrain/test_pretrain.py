"""Pre-training stage: presets, fairseq config composition, the recipe run in process, Slurm
rendering."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from speechfm.core.errors import SpeechfmError
from speechfm.core.presets import load_pretrain
from speechfm.core.sites import load_site
from speechfm.engine.fairseq import FairseqJob, compose_config, ranks_of
from speechfm.launch.rank import expand_hostlist, rank_environment
from speechfm.launch.slurm import layout, render_sbatch
from speechfm.pretrain import build_config
from tests.helpers import GOLDEN, assert_lumi_network


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
