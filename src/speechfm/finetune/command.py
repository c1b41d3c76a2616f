"""CLI verb `speechfm finetune`: labeled data -> a transformers CTC model directory. Parsing
only: the recipe is `speechfm.finetune.recipe`."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Fine-tune a wav2vec2 model with CTC on labeled speech (transformers or fairseq backend)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import (
        add_alphabet,
        add_gpus,
        add_set,
        add_site,
        add_tracking,
        add_updates,
        parse_bool,
    )

    p.add_argument("--labeled", type=Path,
                   help="folder with train/valid[/test] .tsv or .csv tables (the demo's labeled/)")
    p.add_argument("--train", type=Path, help="training table or folder of audio + .txt")
    p.add_argument("--valid", type=Path, help="validation table or folder of audio + .txt")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: data/, checkpoints/, model/ (the transformers CTC model)")
    p.add_argument("--backend", choices=("transformers", "fairseq"), default="transformers")
    p.add_argument("--preset", default="tiny",
                   help="fine-tuning preset name (tiny, base, large, xlarge) or a YAML file")
    p.add_argument("--init", type=Path,
                   help="pre-trained model: a transformers folder (see `speechfm export`) or a "
                        "fairseq checkpoint .pt; without it the preset model starts from random")
    g = p.add_argument_group(
        "backend-neutral knobs (params.yaml finetune.*; each backend maps them to its settings, "
        "see speechfm.finetune.knobs)")
    g.add_argument("--epochs", type=float, default=None,
                   help="run length in epochs (0: not set; the fairseq presets' schedules need "
                        "--updates)")
    add_updates(g)
    g.add_argument("--learning-rate", type=float, default=None,
                   help="peak learning rate (0: the preset's)")
    g.add_argument("--freeze-feature-encoder", type=parse_bool, default=None,
                   metavar="{true,false}",
                   help="keep the convolutional feature encoder fixed (default: the preset's)")
    add_gpus(p)
    add_set(p, "warmup_steps=0.2 or, for fairseq, --set model.mask_prob=0.3 (backend settings)")
    add_alphabet(p)
    p.add_argument("--no-fold-accents", action="store_true",
                   help="drop letters like é instead of folding them to e")
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh even if only the length changed (by default a run in "
                        "--out resumes when nothing but its length changed, and starts afresh, "
                        "the old checkpoints moved to *.previous, when anything else did)")
    add_site(p)
    add_tracking(p, experiment="finetune")


def config_of(args: argparse.Namespace):
    """The recipe's `FinetuneConfig` from parsed arguments."""
    from speechfm.finetune.recipe import FinetuneConfig

    return FinetuneConfig(
        out=args.out, labeled=args.labeled, train=args.train, valid=args.valid,
        backend=args.backend, preset=args.preset, init=args.init, epochs=args.epochs or 0,
        updates=args.updates or 0, learning_rate=args.learning_rate or 0,
        freeze_feature_encoder=args.freeze_feature_encoder, gpus=args.gpus,
        overrides=args.overrides, alphabet=args.alphabet, keep=args.keep,
        fold_accents=not args.no_fold_accents, resume=not args.no_resume, site=args.site,
        tracking_uri=args.tracking_uri, experiment=args.experiment)


def run(args: argparse.Namespace) -> int:
    from speechfm.finetune import recipe

    print(recipe.run(config_of(args)))
    return 0
