"""The `speechfm` command: one verb per stage of the recipe.

Each verb lives in its stage's `command` module, which exposes `HELP`, `add_arguments(parser)`
and `run(args)`. Command modules import heavy libraries (torch, fairseq) inside `run` only, so
`speechfm --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from speechfm import __version__
from speechfm.core.errors import SpeechfmError

# verb -> module; the order is the order of the recipe and of `speechfm --help`.
COMMANDS: dict[str, str] = {
    "synth": "speechfm.synth.command",
    "inventory": "speechfm.prepare.inventory_command",
    "convert": "speechfm.prepare.convert_command",
    "prepare": "speechfm.prepare.command",
    "verify": "speechfm.prepare.verify_command",
    "dedup": "speechfm.dedup.command",
    "pretrain": "speechfm.pretrain.command",
    "export": "speechfm.export.command",
    "finetune": "speechfm.finetune.command",
    "evaluate": "speechfm.evaluate.command",
    "lm": "speechfm.evaluate.lm_command",
    "lur": "speechfm.interpret.command",
    "lur-plot": "speechfm.interpret.plot_command",
    "register": "speechfm.register.command",
    "serve": "speechfm.serve.command",
}

log = logging.getLogger("speechfm")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechfm",
        description="From a raw broadcast archive to monolingual wav2vec 2.0 speech models.",
    )
    parser.add_argument("--version", action="version", version=f"speechfm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="VERB", required=True)
    for verb, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    try:
        result = args._run(args)
    except SpeechfmError as exc:
        if args.debug:
            raise
        print(f"speechfm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"speechfm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user, traceback with --debug
        if args.debug:
            raise
        print(
            f"speechfm {args.command}: error: {type(exc).__name__}: {exc} "
            "(run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
