"""`speechfm lur` end to end: an interrupted analysis resumed from the CLI equals a fresh one; its
report, plots and MLflow run; `speechfm lur-plot` overlaying two reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from speechfm.cli import main
from speechfm.interpret.lur import LurRun, analyse
from tests.helpers import run_speechfm
from tests.helpers.lur import STEPS


@pytest.mark.slow
def test_cli_resume_report_mlflow_and_overlay(tiny_ctc_model_dir, test_tsv, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "report"
    common = ["lur", "--model", str(tiny_ctc_model_dir), "--data", str(test_tsv), "--out", str(out),
              "--steps", str(STEPS), "--save-every", "1", "--tracking-uri", uri]
    assert main([*common, "--utterances", "1"]) == 0  # an interrupted analysis, in effect
    assert json.loads((out / "lur.json").read_text())["utterances"] == 1
    capsys.readouterr()
    assert main(common) == 2  # the saved state is not overwritten without --resume
    assert "--resume" in capsys.readouterr().err
    resumed = run_speechfm(*common, "--resume")  # as a user runs it
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((out / "lur.json").read_text())
    assert report["utterances"] == 3 and report["layers"] == [1, 2]

    fresh = analyse(LurRun(model_dir=tiny_ctc_model_dir, data=test_tsv, out=tmp_path / "fresh",
                           steps=STEPS))
    assert np.allclose(report["lur"], fresh["lur"])
    assert report["relevant_neurons"] == fresh["relevant_neurons"]
    assert report["frames_per_token"] == fresh["frames_per_token"]
    assert len(report["frames_per_token"]) >= 3
    assert report["completeness_error"]["max"] < 1e-2
    assert report["settings"]["steps"] == STEPS
    for name in ("lur.svg", "lur.png"):
        assert (out / name).stat().st_size > 1000

    import mlflow

    client = mlflow.MlflowClient(uri)
    run_id = json.loads(resumed.stdout)["mlflow_run"]
    assert {a.path for a in client.list_artifacts(run_id)} == {"lur.json", "lur.svg", "lur.png"}
    assert [m.step for m in client.get_metric_history(run_id, "lur")] == [1, 2]

    assert main(["lur-plot", str(out), str(tmp_path / "fresh"), "--labels", "resumed", "fresh",
                 "--out", str(tmp_path / "fig")]) == 0
    svg = (tmp_path / "fig" / "lur.svg").read_text()
    assert "resumed" in svg and "fresh" in svg
    assert (tmp_path / "fig" / "lur.png").stat().st_size > 1000
