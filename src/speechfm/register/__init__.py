"""`speechfm register`: put a fine-tuned CTC model folder into the MLflow model registry.

The service serves registered models (`models:/<name>/<version>`); a version's artifacts are the
transformers folder (config, safetensors weights, processor files) exactly as fine-tuning wrote it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from speechfm.core.errors import SpeechfmError

log = logging.getLogger(__name__)

REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.json")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")  # transformers 5 / 4


def check_model_dir(model_dir: Path) -> None:
    """Refuse anything but a transformers wav2vec2 CTC folder with safetensors weights."""
    if not model_dir.is_dir():
        raise SpeechfmError("no such model folder", model_dir)
    missing = [name for name in REQUIRED_FILES if not (model_dir / name).exists()]
    if not any((model_dir / name).exists() for name in PROCESSOR_FILES):
        missing.append(PROCESSOR_FILES[0])
    if missing:
        raise SpeechfmError(f"not a fine-tuned CTC model folder: missing {', '.join(missing)}",
                            model_dir, hint="give the folder that 'speechfm finetune' wrote")
    arch = json.loads((model_dir / "config.json").read_text()).get("architectures") or []
    if "Wav2Vec2ForCTC" not in arch:
        raise SpeechfmError(f"config.json describes {arch or 'no architecture'}, not "
                            "Wav2Vec2ForCTC", model_dir)


def register_model(model_dir: Path, name: str, uri: str | None = None,
                   metrics: dict[str, float] | None = None, experiment: str = "register") -> dict:
    """Log `model_dir` as the artifacts of a new run and register it as a new version of `name`."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from speechfm.core.tracking import enabled, start_run, tracking_uri

    check_model_dir(model_dir)
    if not enabled(uri):
        raise SpeechfmError("registering needs an MLflow store; the tracking URI is 'none'",
                            hint="pass --tracking-uri sqlite:///PATH/mlflow.db or a server URI")
    uri = tracking_uri(uri)
    with start_run(experiment, run_name=f"register-{name}", params={"model_dir": str(model_dir)},
                   tags={"speechfm.stage": "register"}, uri=uri) as run:
        run.log_artifacts(model_dir, artifact_path="model")
        if metrics:
            run.log_metrics(metrics)
        source = f"{run.artifact_uri}/model"
    client = MlflowClient(tracking_uri=uri)
    try:
        client.create_registered_model(name)
    except MlflowException as exc:  # already registered: add a version
        if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
            raise
    version = client.create_model_version(name, source, run.run_id)
    log.info("registered %s as %s version %s in %s", model_dir, name, version.version, uri)
    return {"name": name, "version": int(version.version), "run_id": run.run_id,
            "source": source, "tracking_uri": uri}
