"""CLI verb `speechfm export`."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("Convert a fairseq wav2vec2 checkpoint (pre-trained or CTC) to a transformers folder, "
        "and/or write a CTC folder's ONNX graphs for 'serve --runtime onnx'.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="fairseq checkpoint (.pt); with --onnx and no "
                   "--out, a transformers CTC folder to add ONNX graphs to")
    p.add_argument("--out", type=Path, help="transformers model folder to write (for a checkpoint)")
    p.add_argument("--dict", type=Path, dest="dictionary",
                   help="dict.ltr.txt of a CTC model (default: the one stored in the checkpoint)")
    p.add_argument("--onnx", action="store_true",
                   help="write features.onnx, model.onnx, model.int8.onnx and onnx.json into the "
                   "CTC folder (ONNX Runtime serving; the int8 graph quantizes MatMuls only)")


def run(args: argparse.Namespace) -> int:
    from speechfm.core.errors import SpeechfmError
    from speechfm.export import export_checkpoint, export_onnx

    if args.out is None and not args.onnx:
        raise SpeechfmError("--out is required to convert a checkpoint", path=args.checkpoint)
    folder = args.checkpoint
    if args.out is not None:
        folder = export_checkpoint(args.checkpoint, args.out, args.dictionary)
        print(folder)
    if args.onnx:
        if not (Path(folder) / "config.json").is_file():
            raise SpeechfmError("not a transformers model folder (no config.json)", path=folder,
                                hint="pass the model/ folder of 'speechfm finetune', or a "
                                "checkpoint with --out")
        for path in export_onnx(Path(folder)):
            print(path)
    return 0
