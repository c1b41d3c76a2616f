"""CLI verb `speechfm evaluate`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "Transcribe test sets with a CTC model (greedy, or beam search with --lm) and score WER/CER."

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import add_alphabet, add_lm, add_model, add_tracking

    add_model(p)
    p.add_argument("--test", action="append", required=True, metavar="[NAME=]PATH",
                   help="test set: a table (path, text) or a folder of audio + .txt; repeatable")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for hyp_<name>.tsv and metrics.json")
    add_alphabet(p)
    add_lm(p)
    add_tracking(p, experiment="evaluate")


def test_sets(items: list[str]) -> dict[str, Path]:
    """`NAME=PATH` or `PATH` (named after the file/folder stem) -> {name: path}."""
    from speechfm.core.errors import SpeechfmError

    sets: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        source = Path(path) if sep else Path(item)
        key = name if sep else source.stem
        if key in sets:
            raise SpeechfmError(f"two test sets named '{key}'", hint="name them NAME=PATH")
        sets[key] = source
    return sets


def run(args: argparse.Namespace) -> int:
    import json

    from speechfm.core.text import FINNISH_ALPHABET, TextConfig
    from speechfm.core.tracking import start_run
    from speechfm.evaluate.decode import evaluate

    sets = test_sets(args.test)
    config = TextConfig(alphabet=args.alphabet or FINNISH_ALPHABET, extra=args.keep)
    params = {"model": str(args.model.resolve()), "sets": {k: str(v) for k, v in sets.items()},
              "decoding": "greedy"}
    lm_settings = {"alpha": args.alpha, "beta": args.beta, "beam_width": args.beam_width}
    if args.lm:
        params |= {"decoding": "beam", "lm": str(args.lm.resolve()), **lm_settings}
    with start_run(args.experiment, run_name=args.model.parent.name or args.model.name,
                   params=params, tags={"stage": "evaluate"}, uri=args.tracking_uri) as run:
        results = evaluate(args.model, sets, args.out, config, args.lm, lm_settings)
        for name, scores in results.items():
            run.log_metrics({f"{name}/{k}": float(v) for k, v in scores.items()})
        run.log_artifacts(args.out, artifact_path="evaluation")
    print(json.dumps(results, indent=1))
    return 0
