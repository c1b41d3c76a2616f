"""MLflow tracking shared by every stage: one run per job, SQLite store in the project by default."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_STORE = "mlflow.db"


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI: the argument, else $MLFLOW_TRACKING_URI, else `sqlite:///./mlflow.db`."""
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path(DEFAULT_STORE).resolve()}"


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


@contextlib.contextmanager
def start_run(
    experiment: str, run_name: str | None = None, params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None, uri: str | None = None,
) -> Iterator[Any]:
    """Open an MLflow run in `experiment`, log the (flattened) params, yield the active run."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(uri))
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        if params:
            flat = flatten(params)
            items = list(flat.items())
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
                mlflow.log_params(dict(items[i : i + 100]))
        log.info("MLflow run %s in experiment '%s' (%s)", run.info.run_id, experiment,
                 mlflow.get_tracking_uri())
        yield run
