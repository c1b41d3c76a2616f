"""Argument spellings every verb shares, so one idea has one name across the CLI, `dvc.yaml`,
`params.yaml`, the API and the docs: `--set KEY=VALUE`, `--tracking-uri URI|none`, `--gpus N`,
`--site`, `--workers N`, `--updates N`, `--model`, `--alphabet`/`--keep`, booleans as
`true|false`. There are no deprecated spellings (0.1.0 had no outside users).
`tests/unit/test_naming.py` checks that verbs sharing an option take it from here."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from speechfm.core.errors import SpeechfmError


def add_tracking(parser: argparse.ArgumentParser, experiment: str | None = None) -> None:
    """`--tracking-uri` (and `--experiment` when the verb opens runs of its own)."""
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                             "sqlite:///./mlflow.db); 'none' records nothing")
    if experiment is not None:
        parser.add_argument("--experiment", default=experiment,
                            help=f"MLflow experiment (default: {experiment})")


def add_lm(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    """`--lm`, `--alpha`, `--beta`, `--beam-width`: n-gram beam search instead of greedy decoding
    (`evaluate` and `serve`); without `defaults` unset flags stay None (the verb's settings
    decide: `serve` reads $SPEECHFM_SERVE_* too)."""
    parser.add_argument("--lm", type=Path,
                        help="n-gram language model (.arpa from 'speechfm lm', or a KenLM "
                        "binary): beam search instead of greedy decoding")
    for flag, kind, default, text in (("--alpha", float, 0.5, "language model weight"),
                                      ("--beta", float, 1.0, "word insertion bonus"),
                                      ("--beam-width", int, 50, "beam width")):
        parser.add_argument(flag, type=kind, default=default if defaults else None,
                            help=f"{text} (default {default})")


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


def parse_bool(text: str) -> bool:
    """`true/false`, `yes/no`, `1/0`, `on/off` (what DVC renders for a params.yaml boolean)."""
    value = str(text).strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not '{text}'")


def add_bool(parser: argparse.ArgumentParser | Any, flag: str, default: bool | None,
             help: str) -> None:
    """A `--flag {true,false}` option (params.yaml booleans reach the CLI as true/false)."""
    parser.add_argument(flag, type=parse_bool, default=default, metavar="{true,false}", help=help)


def add_updates(parser: argparse.ArgumentParser | Any) -> None:
    """`--updates N`: a training run's length in optimizer updates (pre-training, fine-tuning)."""
    parser.add_argument("--updates", type=int, default=None,
                        help="run length in optimizer updates (unset or 0: the preset's); "
                             "raising it continues the run in --out when nothing else changed")


def add_site(parser: argparse.ArgumentParser) -> None:
    """`--site NAME|FILE`: where the verb's work runs (pipelines/sites/*.yaml); its file decides
    whether that is here or on Slurm."""
    parser.add_argument("--site", default="local",
                        help="site profile in pipelines/sites/ (local, local-slurm, lumi) or a "
                             "site YAML file; the site decides where the work runs (default: "
                             "local)")


def add_workers(parser: argparse.ArgumentParser, default: int | None,
                unset: str = "") -> None:
    """`--workers N`: parallel worker processes (prepare, convert, synth); with `default` None,
    `unset` says who decides instead (e.g. the site file)."""
    parser.add_argument("--workers", type=int, default=default,
                        help="parallel worker processes (default: "
                             f"{unset if default is None else default})")


def add_model(parser: argparse.ArgumentParser) -> None:
    """`--model DIR`: the transformers CTC model folder a verb reads (evaluate, lur)."""
    parser.add_argument("--model", type=Path, required=True,
                        help="transformers CTC model folder with its processor (finetune's "
                             "model/, or an export)")


def add_alphabet(parser: argparse.ArgumentParser) -> None:
    """`--alphabet`, `--keep`: which characters transcript normalisation keeps."""
    parser.add_argument("--alphabet",
                        help="letters kept by normalisation (default: Finnish a-z å ä ö)")
    parser.add_argument("--keep", default="",
                        help="extra characters kept besides the alphabet, e.g. digits "
                             "\"0123456789\"")


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
