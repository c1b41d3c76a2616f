"""CLI verb `speechfm export`."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Convert a fairseq wav2vec2 checkpoint (pre-trained or CTC) to a transformers folder."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="fairseq checkpoint (.pt)")
    p.add_argument("--out", type=Path, required=True, help="transformers model folder to write")
    p.add_argument("--dict", type=Path, dest="dictionary",
                   help="dict.ltr.txt of a CTC model (default: the one stored in the checkpoint)")


def run(args: argparse.Namespace) -> int:
    from speechfm.export import export_checkpoint

    print(export_checkpoint(args.checkpoint, args.out, args.dictionary))
    return 0
