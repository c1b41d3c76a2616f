"""MLflow tracking shared by every stage: one run per job, SQLite store in the project by default,
or nothing at all with the tracking URI `none` (every verb's `--tracking-uri none`).

Verbs log through the `Run` that `start_run` yields, never through `mlflow.*` directly, so a
disabled run costs nothing and never creates a run in a default store behind the user's back.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_STORE = "mlflow.db"
DISABLED = "none"
"""The tracking URI that turns MLflow off."""


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI: the argument, else $MLFLOW_TRACKING_URI, else `sqlite:///./mlflow.db`;
    `none` (in either) means no tracking."""
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path(DEFAULT_STORE).resolve()}"


def enabled(uri: str | None) -> bool:
    """Whether `uri` (as given to `tracking_uri`) records anything."""
    return tracking_uri(uri).strip().lower() != DISABLED


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> MLflow params (`a.b.c` keys, values as strings cut to MLflow's limit)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)[:6000]
    return flat


class Run:
    """The MLflow run of a job, or a run that records nothing (`run_id` None)."""

    def __init__(self, run: Any = None):
        self._run = run

    @property
    def run_id(self) -> str | None:
        return self._run.info.run_id if self._run is not None else None

    @property
    def artifact_uri(self) -> str | None:
        return self._run.info.artifact_uri if self._run is not None else None

    def __bool__(self) -> bool:
        return self._run is not None

    def log_params(self, params: dict[str, Any]) -> None:
        if self._run is None:
            return
        import mlflow

        items = list(flatten(params).items())
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            mlflow.log_params(dict(items[i: i + 100]))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._run is not None:
            import mlflow

            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self._run is not None:
            import mlflow

            mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        if self._run is not None:
            import mlflow

            mlflow.log_artifacts(str(folder), artifact_path=artifact_path)

    def log_dict(self, data: dict[str, Any], name: str) -> None:
        if self._run is not None:
            import mlflow

            mlflow.log_dict(data, name)

    def set_tag(self, key: str, value: str) -> None:
        if self._run is not None:
            import mlflow

            mlflow.set_tag(key, value)


@contextlib.contextmanager
def start_run(
    experiment: str, run_name: str | None = None, params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None, uri: str | None = None, run_id: str | None = None,
) -> Iterator[Run]:
    """Open an MLflow run in `experiment` (or continue `run_id`), log the (flattened) params,
    yield it as a `Run`; with the URI `none` yield a `Run` that records nothing."""
    if not enabled(uri):
        yield Run(None)
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(uri))
    if run_id is None:
        mlflow.set_experiment(experiment)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name,
                          tags=None if run_id else tags) as active:
        run = Run(active)
        if params:
            run.log_params(params)
        log.info("MLflow run %s in experiment '%s' (%s)", active.info.run_id, experiment,
                 mlflow.get_tracking_uri())
        yield run
