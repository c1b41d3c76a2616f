"""Argument spellings every verb shares, so one idea has one name across the CLI, `dvc.yaml`,
`params.yaml`, the API and the docs: `--set KEY=VALUE`, `--tracking-uri URI|none`, `--gpus N`,
and one-line deprecation warnings for the old spellings (still accepted for now)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from speechfm.core.errors import SpeechfmError

_warned: set[str] = set()


def warn_deprecated(old: str, new: str) -> None:
    """One line on stderr, once per process: `old` still works, `new` is the spelling to use."""
    if old not in _warned:
        _warned.add(old)
        print(f"speechfm: warning: {old} is deprecated; use {new}", file=sys.stderr)


class DeprecatedAlias(argparse.Action):
    """An old option name that stores into the new option's destination, with a warning."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: Any):
        self.new = new
        kwargs.setdefault("help", f"deprecated spelling of {new}")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        warn_deprecated(option_string or self.option_strings[0], self.new)
        if isinstance(getattr(namespace, self.dest, None), list) and not isinstance(values, list):
            getattr(namespace, self.dest).append(values)
        else:
            setattr(namespace, self.dest, values)


def add_alias(parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs: Any) -> None:
    """Accept `old` as a deprecated spelling of `new` (same destination, help hidden)."""
    parser.add_argument(old, dest=dest, action=DeprecatedAlias, new=new,
                        help=argparse.SUPPRESS, **kwargs)


def add_tracking(parser: argparse.ArgumentParser, experiment: str | None = None) -> None:
    """`--tracking-uri` (and `--experiment` when the verb opens runs of its own)."""
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                             "sqlite:///./mlflow.db); 'none' records nothing")
    if experiment is not None:
        parser.add_argument("--experiment", default=experiment,
                            help=f"MLflow experiment (default: {experiment})")


def add_set(parser: argparse.ArgumentParser, example: str) -> None:
    """`--set KEY=VALUE`, repeatable: settings of the backend that override the preset."""
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help=f"override a setting of the preset (repeatable), e.g. --set {example}")


def add_gpus(parser: argparse.ArgumentParser) -> None:
    """`--gpus N`: training ranks (GPUs or GCDs; CPU processes where there is no GPU)."""
    parser.add_argument("--gpus", type=int, default=1,
                        help="ranks that really run: GPUs (GCDs on LUMI), CPU processes without "
                             "a GPU (default: 1)")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings -> dict, values parsed as YAML scalars (numbers, booleans, lists)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpeechfmError(f"override '{item}' is not KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out
