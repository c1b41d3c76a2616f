"""`speechfm register` end to end: a model folder registered twice becomes two versions in the
MLflow registry whose artifacts load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_speechfm


@pytest.mark.slow  # a whole verb end to end (see `make test-fast`)
def test_register_twice_makes_two_versions_whose_artifacts_load(tiny_ctc_model_dir: Path,
                                                                 tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient
    from transformers import Wav2Vec2ForCTC

    from speechfm.core.onnx import is_current

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"test": {"wer": 0.25, "cer": 0.05}, "note": "x"}))
    for expected, extra in ((1, []), (2, ["--no-onnx"])):
        res = run_speechfm("register", tiny_ctc_model_dir, "--name", "demo-fi", "--metrics",
                           metrics, "--out", tmp_path / "reg.json", "--tracking-uri", uri,
                           *extra, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert json.loads((tmp_path / "reg.json").read_text())["version"] == expected
    client = MlflowClient(uri)
    versions = client.search_model_versions("name='demo-fi'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    run = client.get_run(versions[0].run_id)
    assert run.data.metrics == {"test.wer": 0.25, "test.cer": 0.05}
    mlflow.set_tracking_uri(uri)
    folders = {}
    for version in (1, 2):
        got = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/demo-fi/{version}",
                                                       dst_path=str(tmp_path / f"dl{version}")))
        folders[version] = got if (got / "config.json").exists() else got / "model"
        assert Wav2Vec2ForCTC.from_pretrained(folders[version]).config.num_hidden_layers == 2
    # version 1 carries ONNX graphs of exactly these weights (servable with --runtime onnx),
    # exported beside the stage's folder, which is left as it was
    assert is_current(folders[1]) and (folders[1] / "model.int8.onnx").is_file()
    assert not (folders[2] / "model.onnx").exists()
    assert not (tiny_ctc_model_dir / "model.onnx").exists()
