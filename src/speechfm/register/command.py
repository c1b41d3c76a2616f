"""CLI verb `speechfm register`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Register a fine-tuned CTC model folder in the MLflow model registry (for the service)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import add_tracking

    p.add_argument("model", type=Path, help="transformers CTC model folder from 'finetune'")
    p.add_argument("--name", required=True, help="registered model name, e.g. speechfm-fi")
    p.add_argument("--metrics", type=Path,
                   help="JSON of numbers to log with the version (e.g. evaluate's metrics.json)")
    p.add_argument("--out", type=Path, help="write the registration (name, version, run) here")
    add_tracking(p)


def run(args: argparse.Namespace) -> int:
    from speechfm.core.errors import SpeechfmError
    from speechfm.register import register_model

    metrics = None
    if args.metrics:
        try:
            data = json.loads(args.metrics.read_text())
        except (OSError, ValueError) as exc:
            raise SpeechfmError(f"cannot read metrics: {exc}", args.metrics) from exc
        metrics = {k: float(v) for k, v in _numbers(data).items()}
    result = register_model(args.model, args.name, args.tracking_uri, metrics)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


def _numbers(data: object, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a JSON document, as MLflow metric names (`a.b`)."""
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(_numbers(value, f"{prefix}{key}."))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix.rstrip(".")] = float(data)
    return out
