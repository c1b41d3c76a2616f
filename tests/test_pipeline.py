"""The DVC pipeline (dvc.yaml + params.yaml) end to end with the smallest settings, for real:
full run (pre-training on the de-duplicated manifests), no-op rerun, partial rerun after a
fine-tuning param change, and the local-slurm site."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # one full dvc repro: minutes

# Two files a channel: the split by source file puts one in validation (with one, a channel has
# no validation rows and pre-training has no valid.tsv), and the second day reruns a programme.
SMALLEST = {
    # two broadcast hours per channel (validation is drawn by whole source file), on two days
    # (the demo reruns a programme on the next day: material for the dedup stage)
    "demo": {"channels": 4, "days": 2, "hours_per_day": 1, "hour_seconds": 30, "train": 40,
             "valid": 8, "test": 8},
    "prepare": {"workers": 2},
    "pretrain": {"max_update": 10},
    "finetune": {"epochs": 1},
    "lur": {"steps": 4, "utterances": 2},
}


def make_project(where: Path) -> Path:
    """A fresh git + DVC project holding this checkout's pipeline files, with tiny params."""
    project = where / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=project,
                   check=True)
    for name in ("dvc.yaml", "params.yaml", ".dvc/config"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "pipelines", project / "pipelines")
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in SMALLEST.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def dvc(project: Path, *args: str) -> str:
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    res = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=project, env=env,
                         capture_output=True, text=True, timeout=1500, check=False)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return res.stdout + res.stderr


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(tmp_path_factory.mktemp("pipeline"))
    out = dvc(project, "repro")
    assert ran(out) == {"demo", "prepare", "dedup", "pretrain", "export", "finetune", "evaluate",
                        "lur", "register"}
    return project


def test_full_pipeline_leaves_a_served_ready_model(project: Path) -> None:
    from mlflow.tracking import MlflowClient

    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert 0 <= metrics["demo-test"]["cer"] <= 1.5
    lur = json.loads((project / "reports/lur/demo/lur.json").read_text())
    assert len(lur["lur"]) == len(lur["layers"]) > 0
    reg = json.loads((project / "reports/register.json").read_text())
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    versions = client.search_model_versions(f"name='{reg['name']}'")
    assert [int(v.version) for v in versions] == [reg["version"]]
    assert (project / "runs/finetune/model/model.safetensors").exists()
    shown = dvc(project, "metrics", "show", "--json")
    assert "hours_kept" in shown and "cer" in shown and "speech_recall" in shown
    vad = json.loads((project / "data/prepared/vad_quality.json").read_text())
    assert vad["speech_recall"] > 0.8


def test_pretraining_reads_the_deduplicated_manifests(project: Path) -> None:
    config = yaml.safe_load((project / "runs/pretrain/config.yaml").read_text())
    assert Path(config["task"]["data"]) == (project / "data/dedup/manifests").resolve()
    report = json.loads((project / "data/dedup/report.json").read_text())
    train = (project / "data/dedup/manifests/train.tsv").read_text().splitlines()
    original = (project / "data/prepared/manifests/train.tsv").read_text().splitlines()
    assert len(train) == len(original) - report["removed_segments"]
    assert set(train) <= set(original)
    assert "truth" in report  # the demo archive has ground truth


def test_second_repro_does_nothing(project: Path) -> None:
    out = dvc(project, "repro")
    assert ran(out) == set()
    assert "didn't change" in out or "up to date" in out


def test_param_change_reruns_finetune_and_what_follows(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"]["learning_rate"] = 0.002
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = dvc(project, "repro")
    assert ran(out) == {"finetune", "evaluate", "lur", "register"}


def test_push_and_pull_through_the_local_remote(project: Path, tmp_path: Path) -> None:
    dvc(project, "remote", "modify", "local", "url", str(tmp_path / "remote"))
    dvc(project, "push")
    shutil.rmtree(project / "runs/pretrain")
    dvc(project, "pull", "pretrain")
    assert list((project / "runs/pretrain").glob("checkpoint*.pt"))


def test_local_slurm_site_runs_prepare_and_pretrain_through_slurm(slurm_cluster,
                                                                 tmp_path: Path) -> None:
    project = make_project(tmp_path)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["site"] = "local-slurm"
    params["pretrain"]["gpus"] = 2
    params["pretrain"]["simulate_gpus"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    os.environ["SLURM_CONF"] = slurm_cluster.env["SLURM_CONF"]
    try:
        out = dvc(project, "repro", "pretrain")
    finally:
        os.environ.pop("SLURM_CONF")
    assert ran(out) == {"demo", "prepare", "dedup", "pretrain"}
    assert list((project / "data/prepared/slurm").rglob("*")), "prepare did not go through Slurm"
    assert list((project / "runs/pretrain").glob("slurm-*.out")), "pretrain did not use sbatch"
    assert list((project / "runs/pretrain").glob("checkpoint*.pt"))
