"""Test helper: the MLflow runs of one experiment in a SQLite tracking store."""

from __future__ import annotations

from pathlib import Path


def _mlflow_runs(db: Path, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{db}")
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")
