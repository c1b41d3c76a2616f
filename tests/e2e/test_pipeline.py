"""The DVC pipeline (dvc.yaml + params.yaml) end to end with the smallest settings, for real.

Two projects, each as a user would set one up:
- a user's own archive (a copy of a small demo archive with every `.truth.json` removed, outside
  data/demo, its labeled corpus beside it) with `finetune.backend: fairseq`: the whole
  `dvc repro` to a registered model (pre-training on the de-duplicated manifests); a no-op re-run; a longer fine-tuning resumes fairseq's CTC
  checkpoints; a higher `pretrain.updates` resumes pre-training, after which fine-tuning
  starts afresh (a new pre-trained model); `dvc push`/`pull` of what DVC tracks (models,
  reports), with shards and checkpoints left out of its cache;
- the built-in demo (ground truth beside every file) on the `local-slurm` site: prepare as a
  Slurm array, pre-training and transformers fine-tuning as sbatch jobs of 2 ranks on the real
  single-node Slurm, fine-tuned and evaluated on a training subset (4 utterances) to show that
  the plumbing learns: CER must fall clearly below the 1.0 of a model that learned nothing.
`make demo` runs the third combination (demo, local site, transformers, full size).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, run_speechfm

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # full dvc repro runs: minutes

SMALLEST = {
    # two broadcast hours per channel (validation is drawn by whole source file), on two days
    # (the demo reruns a programme on the next day: material for the dedup stage)
    "demo": {"channels": 4, "days": 2, "hours_per_day": 1, "hour_seconds": 30,
             "train_utterances": 40, "valid_utterances": 8, "test_utterances": 8},
    "prepare": {"workers": 2},
    "pretrain": {"updates": 10},
    "finetune": {"epochs": 1},
    "lur": {"steps": 4, "utterances": 2},
}
ALL_STAGES = {"demo", "inventory", "prepare", "dedup", "pretrain", "export", "finetune",
              "evaluate", "lur", "register"}
CTC_UPDATES = 6


def make_project(where: Path, params: dict | None = None) -> Path:
    """A fresh git + DVC project holding this checkout's pipeline files, with tiny params."""
    project = where / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=project,
                   check=True)
    for name in ("dvc.yaml", "params.yaml", ".dvc/config"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "pipelines", project / "pipelines")
    set_params(project, SMALLEST)
    if params:
        set_params(project, params)
    return project


def set_params(project: Path, values: dict) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, value in values.items():
        if isinstance(value, dict):
            params[section].update(value)
        else:
            params[section] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def dvc(project: Path, *args: str, env: dict[str, str] | None = None) -> str:
    env = {**os.environ, **(env or {}),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    res = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=project, env=env,
                         capture_output=True, text=True, timeout=2000, check=False)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-4000:]
    return res.stdout + res.stderr


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def num_updates(checkpoint: Path) -> int:
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    return state["optimizer_history"][-1]["num_updates"]


def train_inner(log: Path) -> list[dict]:
    """fairseq's per-interval training stats from a train.log, in order."""
    return [json.loads(m.group(1)) for m in re.finditer(r"\| train_inner \| (\{.*\})",
                                                        log.read_text())]


@pytest.fixture(scope="module")
def user_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's archive without ground truth, fine-tuned with fairseq: one full `dvc repro`."""
    where = tmp_path_factory.mktemp("user")
    demo = SMALLEST["demo"]
    made = run_speechfm("synth", "--out", where / "source", "--seed", "1",
                        *(f"--{k.replace('_', '-')}={v}" for k, v in demo.items()))
    assert made.returncode == 0, made.stderr[-3000:]
    project = make_project(where, {
        "data": {"archive": "archive", "labeled": "labeled"},
        "finetune": {"backend": "fairseq", "epochs": 0, "updates": CTC_UPDATES},
        "evaluate": {"name": "test", "test": "labeled/test.tsv"},
        "register": {"name": "speechfm-user"},
    })
    shutil.copytree(where / "source" / "archive", project / "archive",
                    ignore=shutil.ignore_patterns("*.truth.json"))
    shutil.copytree(where / "source" / "labeled", project / "labeled")
    assert not list((project / "archive").rglob("*.truth.json"))
    out = dvc(project, "repro")
    assert ran(out) == ALL_STAGES
    return project


def test_an_archive_without_ground_truth_reaches_a_registered_model(user_project: Path) -> None:
    from mlflow.tracking import MlflowClient

    project = user_project
    assert json.loads((project / "data/prepared/vad_quality.json").read_text()) == {
        "ground_truth": False, "truth_files": 0, "truth_files_skipped": 0}
    assert json.loads((project / "data/demo/synth.json").read_text())["skipped"] is True
    assert json.loads((project / "data/prepared/stats.json").read_text())["total"][
        "hours_kept"] > 0
    # fine-tuned by fairseq from the pre-trained fairseq checkpoint, exported to one CTC folder
    config = yaml.safe_load((project / "runs/finetune/fairseq/config.yaml").read_text())
    assert config["model"]["w2v_path"] == str(project / "runs/pretrain/checkpoint_last.pt")
    assert config["optimization"]["max_update"] == CTC_UPDATES
    assert num_updates(project / "runs/finetune/fairseq/checkpoint_last.pt") == CTC_UPDATES
    assert (project / "runs/finetune/model/model.safetensors").exists()
    assert "wer" in json.loads((project / "runs/finetune/metrics.json").read_text())["valid"]
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert metrics["test"]["utterances"] == SMALLEST["demo"]["test_utterances"]
    lur = json.loads((project / "reports/lur/demo/lur.json").read_text())
    assert len(lur["lur"]) == len(lur["layers"]) > 0
    reg = json.loads((project / "reports/register.json").read_text())
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert [int(v.version) for v in client.search_model_versions(
        f"name='{reg['name']}'")] == [reg["version"]]
    (workspace,) = json.loads(dvc(project, "metrics", "show", "--json")).values()
    shown = workspace["data"]
    # without ground truth prepare and dedup report no precision / recall, and say so in detail
    assert set(shown["data/prepared/summary.json"]["data"]) == {"hours_kept"}
    assert set(shown["data/dedup/summary.json"]["data"]) == {"hours_removed"}
    assert set(shown["reports/evaluate/summary.json"]["data"]) == {"wer", "cer"}
    # DVC read no data: prepare depends on the inventory, and the shards are no DVC output
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    deps = {d["path"] for d in lock["prepare"]["deps"]}
    assert "data/inventory/archive.tsv" in deps and "archive" not in deps
    assert not any(o["path"].startswith("data/prepared/shards") for o in lock["prepare"]["outs"])
    inventory = (project / "data/inventory/archive.tsv").read_text().splitlines()
    assert len(inventory) == 1 + len(list((project / "archive").rglob("*.ts")))


def test_dvc_metrics_fit_a_terminal_and_dvc_plots_render(user_project: Path,
                                                          tmp_path: Path) -> None:
    """`dvc metrics show` is one table of headline numbers that fits 160 columns; the detail stays
    in JSON beside them; `dvc plots show` renders every plot in a browser (headless Chromium,
    Vega inline: no network), the training curves drawn per split."""
    from tests.helpers.cdp import Chromium, offline_vega_template

    project = user_project
    table = dvc(project, "metrics", "show").rstrip("\n").splitlines()
    assert max(map(len, table)) <= 160, "\n".join(table)
    header = table[0].split()
    assert {"Path", "hours_kept", "hours_removed", "loss", "valid_loss", "wer", "cer"} <= set(header)
    lur = json.loads((project / "reports/lur/demo/lur.json").read_text())
    assert {f"lur.{layer}" for layer in lur["layers"]} <= set(header)
    summary = json.loads((project / "reports/lur/demo/summary.json").read_text())
    assert summary["lur"] == {str(k): round(v, 4) for k, v in zip(lur["layers"], lur["lur"])}
    assert "relevant_neurons" in lur and "per_channel_year" in json.loads(
        (project / "data/prepared/stats.json").read_text())
    plots = json.loads(dvc(project, "plots", "show", "--json"))["data"]
    assert set(plots) == {"runs/pretrain/curve.tsv", "runs/finetune/curve.tsv",
                          "reports/lur/demo/lur.tsv"}
    splits = {}
    for name in ("runs/pretrain/curve.tsv", "runs/finetune/curve.tsv"):
        (plot,) = plots[name]
        assert plot["content"]["encoding"]["color"]["field"] == "split"
        splits[name] = {row["split"] for row in plot["content"]["data"]["values"]}
    # pre-training logs every 2 updates and validates; the 6 CTC updates log only validation
    assert splits == {"runs/pretrain/curve.tsv": {"train", "valid"},
                      "runs/finetune/curve.tsv": {"valid"}}
    template = offline_vega_template(tmp_path / "offline.html")
    dvc(project, "plots", "show", "--html-template", str(template), "-o", str(tmp_path / "plots"))
    with Chromium((tmp_path / "plots" / "index.html").as_uri(), tmp_path / "profile") as page:
        page.wait_for("document.querySelectorAll('.vega-embed svg.marks').length === 3")
        drawn = page.evaluate("Array.from(document.querySelectorAll('.vega-embed')).map(e => "
                              "[e.id, e.querySelector('svg.marks').getBoundingClientRect().width, "
                              "e.querySelectorAll('path, circle, line').length, e.innerText])")
    assert [d[0] for d in drawn] == ["runs_pretrain_curve_tsv", "runs_finetune_curve_tsv",
                                     "reports_lur_demo_lur_tsv"]
    for name, width, marks, text in drawn:
        assert width > 100 and marks > 3, (name, width, marks)
    assert "train" in drawn[0][3] and "valid" in drawn[0][3]  # the legend of the splits


def test_pretraining_reads_the_deduplicated_manifests(user_project: Path) -> None:
    project = user_project
    config = yaml.safe_load((project / "runs/pretrain/config.yaml").read_text())
    assert Path(config["task"]["data"]) == (project / "data/dedup/manifests").resolve()
    report = json.loads((project / "data/dedup/report.json").read_text())
    train = (project / "data/dedup/manifests/train.tsv").read_text().splitlines()
    original = (project / "data/prepared/manifests/train.tsv").read_text().splitlines()
    assert len(train) == len(original) - report["removed_segments"]
    assert set(train) <= set(original)
    assert "truth" not in report  # no ground truth beside this archive's files


def test_second_repro_only_retakes_the_inventory(user_project: Path) -> None:
    out = dvc(user_project, "repro")
    assert ran(out) == {"inventory"}  # always run, but its output did not change


def test_a_longer_fine_tuning_resumes_fairseqs_checkpoints(user_project: Path) -> None:
    project = user_project
    set_params(project, {"finetune": {"updates": CTC_UPDATES + 4}})
    out = dvc(project, "repro")
    assert ran(out) == {"inventory", "finetune", "evaluate", "lur", "register"}
    log = (project / "runs/finetune/fairseq/train.log").read_text()
    assert f"@ {CTC_UPDATES} updates)" in log  # "Loaded checkpoint ... (epoch E @ 6 updates)"
    assert num_updates(project / "runs/finetune/fairseq/checkpoint_last.pt") == CTC_UPDATES + 4
    assert not (project / "runs/finetune/fairseq.previous").exists()


def test_higher_pretrain_updates_resume_pretraining(user_project: Path) -> None:
    project = user_project
    before = train_inner(project / "runs/pretrain/train.log")
    set_params(project, {"pretrain": {"updates": 16}})
    out = dvc(project, "repro", "pretrain")
    assert ran(out) == {"inventory", "pretrain"}
    log = project / "runs/pretrain/train.log"
    assert "Loaded checkpoint" in log.read_text() and "@ 10 updates)" in log.read_text()
    assert num_updates(project / "runs/pretrain/checkpoint_last.pt") == 16
    resumed = train_inner(log)[len(before):]
    # the update counter, the data position (the epoch it stopped in) and the learning-rate
    # schedule continue: polynomial decay after 10 warm-up updates, now over 16 updates
    assert resumed and int(resumed[0]["num_updates"]) == 12
    assert resumed[0]["epoch"] == before[-1]["epoch"]
    peak = 0.0005
    assert float(resumed[0]["lr"]) == pytest.approx(peak * (1 - (12 - 10) / (16 - 10)), rel=0.01)
    assert not (project / "runs/pretrain.previous").exists()


def test_a_new_pretraining_starts_fine_tuning_afresh(user_project: Path) -> None:
    project = user_project
    out = dvc(project, "repro", "finetune")  # runs/pretrain/checkpoint_last.pt was rewritten
    assert ran(out) == {"inventory", "finetune"}
    previous = project / "runs/finetune/fairseq.previous"
    assert num_updates(previous / "checkpoint_last.pt") == CTC_UPDATES + 4  # kept, not mixed in
    assert "No existing checkpoint found" in (project / "runs/finetune/fairseq/train.log"
                                              ).read_text()
    assert num_updates(project / "runs/finetune/fairseq/checkpoint_last.pt") == CTC_UPDATES + 4


def test_push_and_pull_send_models_and_reports_not_shards_or_checkpoints(
        user_project: Path, tmp_path: Path) -> None:
    project = user_project
    remote = tmp_path / "remote"
    dvc(project, "remote", "modify", "local", "url", str(remote))
    dvc(project, "push")
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    checkpoint = next(o for o in lock["pretrain"]["outs"]
                      if o["path"] == "runs/pretrain/checkpoint_last.pt")
    stored = {p.parent.name + p.name for p in remote.rglob("*") if p.is_file()}
    cached = {p.parent.name + p.name for p in (project / ".dvc/cache").rglob("*") if p.is_file()}
    assert checkpoint["md5"] not in stored | cached  # cache: false
    model = next(o for o in lock["finetune"]["outs"] if o["path"] == "runs/finetune/model")
    assert model["md5"] in stored  # the fine-tuned model is pushed (its .dir listing and files)
    weights = (project / "runs/finetune/model/model.safetensors").read_bytes()
    shutil.rmtree(project / "runs/finetune/model")
    shutil.rmtree(project / "models/pretrained")
    dvc(project, "pull")
    assert (project / "runs/finetune/model/model.safetensors").read_bytes() == weights
    assert (project / "models/pretrained/config.json").exists()
    assert (project / "runs/pretrain/checkpoint_last.pt").exists()  # untouched by pull


LEARNS_EPOCHS = 100
"""Constant lr 3e-3, no warm-up, 4 short utterances in one step per epoch: measured (2-core VM,
loaded): train CER 1.0 until epoch ~45 (the blank-only plateau), 0.78 at 53, 0.50 at 61, 0.12 at
80, 0.06-0.15 to 300. Four times the 16 utterances stayed on the plateau past 320 updates."""


def learning_subset(project: Path, n: int = 4) -> None:
    """`labeled4/{train,valid,test}.tsv`: the demo's `n` shortest training utterances, in all
    three tables (a training subset: the fine-tuned model is scored on what it learnt)."""
    import csv

    demo = project / "data/demo/labeled"
    with (demo / "train.tsv").open(encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f, delimiter="\t"), key=lambda r: float(r["seconds"]))[:n]
    out = project / "labeled4"
    out.mkdir()
    table = "".join(f"{(demo / r['path']).resolve()}\t{r['text']}\n" for r in rows)
    for split in ("train", "valid", "test"):
        (out / f"{split}.tsv").write_text(table, encoding="utf-8")


def test_local_slurm_site_runs_the_demo_through_slurm_and_the_model_learns(
        slurm_cluster, tmp_path: Path) -> None:
    preset = yaml.safe_load((ROOT / "src/speechfm/presets/finetune_tiny.yaml").read_text())
    preset["transformers"].update(lr_scheduler_type="constant", warmup_steps=0,
                                  per_device_train_batch_size=2, logging_steps=10)
    (tmp_path / "finetune_learns.yaml").write_text(yaml.safe_dump(preset))
    project = make_project(tmp_path, {
        "site": "local-slurm",
        "pretrain": {"gpus": 2, "simulate_gpus": 2},
        "data": {"labeled": "labeled4"},
        "finetune": {"preset": str(tmp_path / "finetune_learns.yaml"), "gpus": 2,
                     "epochs": LEARNS_EPOCHS},
        "evaluate": {"name": "train", "test": "labeled4/train.tsv"},
    })
    slurm = {"SLURM_CONF": slurm_cluster.env["SLURM_CONF"]}
    assert ran(dvc(project, "repro", "demo")) == {"demo"}
    learning_subset(project)
    out = dvc(project, "repro", "evaluate", env=slurm)
    assert ran(out) == {"inventory", "prepare", "dedup", "pretrain", "finetune", "evaluate"}
    assert "truth" in json.loads((project / "data/dedup/report.json").read_text())
    vad = json.loads((project / "data/prepared/vad_quality.json").read_text())
    assert vad["ground_truth"] is True and vad["speech_recall"] > 0.8
    headline = json.loads((project / "data/prepared/summary.json").read_text())
    assert headline["recall"] == round(vad["speech_recall"], 4) and "precision" in headline
    assert {"precision", "recall"} <= set(json.loads(
        (project / "data/dedup/summary.json").read_text()))
    assert list((project / "data/prepared/slurm").rglob("*")), "prepare did not go through Slurm"
    assert list((project / "runs/pretrain").glob("slurm-*.out")), "pretrain did not use sbatch"
    # the transformers backend ran as a Slurm job of 2 ranks, not on the submitting node
    script = (project / "runs/finetune/job.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=2" in script
    assert re.search(r"-m speechfm\.launch\.rank \S*runs/finetune/ranks\.json", script)
    (job_out,) = (project / "runs/finetune").glob("slurm-*.out")
    text = job_out.read_text()
    assert "rank 0: no RCCL/NCCL network plugin" in text and "rank 1: no RCCL" in text
    assert (project / "runs/finetune/model/model.safetensors").exists()
    # it learnt: a model that learned nothing (blank everywhere, or noise) scores CER >= 1
    cer = json.loads((project / "reports/evaluate/metrics.json").read_text())["train"]["cer"]
    assert cer < 0.5, cer
