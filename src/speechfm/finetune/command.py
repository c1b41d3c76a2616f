"""CLI verb `speechfm finetune`: labeled data -> a transformers CTC model directory."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

HELP = "Fine-tune a wav2vec2 model with CTC on labeled speech (transformers or fairseq backend)."

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from speechfm.core.cliargs import add_alias, add_gpus, add_set, add_tracking

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
    add_set(p, "num_train_epochs=5 or, for fairseq, --set optimization.max_update=50")
    add_gpus(p)
    add_alias(p, "--processes", "--gpus", dest="gpus", type=int)
    p.add_argument("--alphabet", help="letters kept by normalisation (default: Finnish a-z å ä ö)")
    p.add_argument("--keep", default="", help="extra characters kept, e.g. digits \"0123456789\"")
    p.add_argument("--no-fold-accents", action="store_true",
                   help="drop letters like é instead of folding them to e")
    p.add_argument("--no-resume", action="store_true",
                   help="start over instead of resuming from the last checkpoint in --out")
    p.add_argument("--site", default="local",
                   help="where ranks run, a site of pipelines/sites (local, local-slurm, lumi); "
                        "Slurm sites submit the job")
    add_tracking(p, experiment="finetune")


def text_config(args: argparse.Namespace):
    from speechfm.core.text import FINNISH_ALPHABET, TextConfig

    return TextConfig(alphabet=args.alphabet or FINNISH_ALPHABET, extra=args.keep,
                      fold_accents=not args.no_fold_accents)


def prepare_data(args: argparse.Namespace) -> Path:
    """Write both backends' inputs to `OUT/data` (done once, before any worker starts)."""
    from speechfm.core.errors import SpeechfmError
    from speechfm.core.labeled import split_tables
    from speechfm.finetune import data

    if args.labeled:
        sources = split_tables(args.labeled)
    elif args.train and args.valid:
        sources = {"train": args.train, "valid": args.valid}
    else:
        raise SpeechfmError("no labeled data given", hint="pass --labeled DIR or --train and --valid")
    if "valid" not in sources:
        raise SpeechfmError("no validation split", path=args.labeled or args.train,
                            hint="add valid.tsv, or pass --valid")
    return data.prepare(sources, args.out / "data", text_config(args))


def run(args: argparse.Namespace) -> int:
    from speechfm.core.cliargs import parse_overrides
    from speechfm.core.presets import load_finetune

    preset = load_finetune(args.preset)
    overrides = parse_overrides(args.overrides)
    worker = "LOCAL_RANK" in os.environ
    data_dir = args.out / "data"
    if not worker:
        prepare_data(args)
    if args.backend == "transformers" and args.gpus > 1 and not worker:
        return _torchrun(args)
    init = _transformers_init(args.init, args.out) if args.backend == "transformers" else args.init
    params = {"backend": args.backend, "preset": preset, "init": str(args.init),
              "overrides": overrides, "gpus": args.gpus, "data": str(data_dir)}
    with _tracking(args, params) as run:
        if args.backend == "transformers":
            from speechfm.finetune import hf

            model_dir = hf.train(data_dir, args.out, preset, init, overrides,
                                 resume=not args.no_resume, run=run)
        else:
            from speechfm.finetune import fairseq_ctc

            model_dir = fairseq_ctc.finetune(data_dir, args.out, preset, init, overrides,
                                             gpus=args.gpus, resume=not args.no_resume,
                                             site=args.site, tracking_uri=args.tracking_uri,
                                             run_id=run.run_id)
    if not worker or os.environ.get("RANK", "0") == "0":
        log.info("fine-tuned CTC model: %s", model_dir)
        print(model_dir)
    return 0


def _tracking(args: argparse.Namespace, params: dict):
    """The MLflow run of this job (rank 0 only; other ranks record nothing)."""
    from speechfm.core.tracking import start_run

    uri = args.tracking_uri if os.environ.get("RANK", "0") == "0" else "none"
    return start_run(args.experiment, run_name=f"{args.backend}-{args.out.name}", params=params,
                     tags={"stage": "finetune", "backend": args.backend}, uri=uri)


def _transformers_init(init: Path | None, out: Path) -> Path | None:
    """A transformers pre-trained model folder; a fairseq checkpoint is exported first."""
    if init is None or init.is_dir():
        return init
    from speechfm.core.checkpoint import export_checkpoint

    target = out / "init"
    if (target / "config.json").exists():
        return target
    if os.environ.get("RANK", "0") != "0":
        raise RuntimeError("worker started before the pre-trained model was exported")
    return export_checkpoint(init, target)


def _torchrun(args: argparse.Namespace) -> int:
    """Re-run this command in `--gpus` processes with torchrun (gloo on CPU, nccl on GPUs)."""
    if args.init is not None and not args.init.is_dir():
        _transformers_init(args.init, args.out)  # export once, before the workers start
    # Workers see LOCAL_RANK and so neither prepare data again nor launch workers themselves.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={args.gpus}", "-m", "speechfm", *sys.argv[1:]]
    log.info("launching %d workers: %s", args.gpus, " ".join(cmd))
    return subprocess.call(cmd)
