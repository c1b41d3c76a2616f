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
    from speechfm.core.cliargs import add_alias, add_gpus, add_set, add_tracking, parse_bool

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
    g.add_argument("--updates", type=int, default=None,
                   help="run length in optimizer updates (0: not set)")
    g.add_argument("--learning-rate", type=float, default=None,
                   help="peak learning rate (0: the preset's)")
    g.add_argument("--freeze-feature-encoder", type=parse_bool, default=None,
                   metavar="{true,false}",
                   help="keep the convolutional feature encoder fixed (default: the preset's)")
    add_gpus(p)
    add_set(p, "warmup_steps=0.2 or, for fairseq, --set model.mask_prob=0.3 (backend settings)")
    add_alias(p, "--processes", "--gpus", dest="gpus", type=int)
    p.add_argument("--alphabet", help="letters kept by normalisation (default: Finnish a-z å ä ö)")
    p.add_argument("--keep", default="", help="extra characters kept, e.g. digits \"0123456789\"")
    p.add_argument("--no-fold-accents", action="store_true",
                   help="drop letters like é instead of folding them to e")
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh even if only the length changed (by default a run in "
                        "--out resumes when nothing but its length changed, and starts afresh, "
                        "the old checkpoints moved to *.previous, when anything else did)")
    p.add_argument("--site", default="local",
                   help="where ranks run, a site of pipelines/sites (local, local-slurm, lumi); "
                        "Slurm sites submit the job (either backend) and wait for it")
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
    from speechfm.core.sites import load_site
    from speechfm.finetune.knobs import Knobs

    preset = load_finetune(args.preset)
    knobs = Knobs.from_args(args)
    given = parse_overrides(args.overrides)
    overrides = (knobs.transformers(given) if args.backend == "transformers"
                 else knobs.fairseq(given, preset))
    site = load_site(args.site)
    worker = "LOCAL_RANK" in os.environ  # started by torchrun or by launch.rank under srun
    data_dir = args.out / "data"
    if not worker:
        prepare_data(args)
    if args.backend == "transformers":
        init = _transformers_init(args.init, args.out)
        if not worker:
            _settle_transformers(args, preset, overrides)
            if site.train.executor == "slurm":
                return _submit(args, site)
            if args.gpus > 1:
                return _torchrun(args)
    else:
        init = args.init
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


SOURCE_STAMP = "speechfm_source.json"
"""Beside an exported `--init`: which checkpoint it was exported from (re-exported when that
changes, e.g. after pre-training continued)."""


def _transformers_init(init: Path | None, out: Path) -> Path | None:
    """A transformers pre-trained model folder; a fairseq checkpoint is exported first (again
    whenever the checkpoint changed since the last export)."""
    if init is None or init.is_dir():
        return init
    import json

    from speechfm.core.checkpoint import export_checkpoint
    from speechfm.launch.resume import file_identity

    target = out / "init"
    source = file_identity(init)
    stamp = target / SOURCE_STAMP
    if (target / "config.json").exists() and stamp.exists() \
            and json.loads(stamp.read_text(encoding="utf-8")) == source:
        return target
    if "LOCAL_RANK" in os.environ:
        raise RuntimeError("worker started before the pre-trained model was exported")
    export_checkpoint(init, target)
    stamp.write_text(json.dumps(source) + "\n", encoding="utf-8")
    return target


def _settle_transformers(args: argparse.Namespace, preset: dict, overrides: dict) -> None:
    """Before any worker starts: resume the Trainer checkpoints in OUT/checkpoints only if nothing
    but the run's length changed (settings, ranks, pre-trained model, labeled data)."""
    from speechfm.finetune.data import digest
    from speechfm.finetune.knobs import EXECUTION_KEYS, LENGTH_KEYS
    from speechfm.launch.resume import file_identity, settle_run

    folder = args.out / "checkpoints"
    trainer = {k: v for k, v in (dict(preset["transformers"]) | overrides).items()
               if k not in LENGTH_KEYS + EXECUTION_KEYS}
    settings = {"model": preset.get("model"), "ctc": preset.get("ctc"), "transformers": trainer,
                "gpus": args.gpus, "init": file_identity(args.init),
                "data": digest(args.out / "data")}
    settle_run(folder, settings, has_checkpoint=any(folder.glob("checkpoint-*")),
               fresh=args.no_resume)


def _torchrun(args: argparse.Namespace) -> int:
    """Re-run this command in `--gpus` processes with torchrun (gloo on CPU, nccl on GPUs)."""
    # Workers see LOCAL_RANK and so neither prepare data again nor launch workers themselves.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={args.gpus}", "-m", "speechfm", *sys.argv[1:]]
    log.info("launching %d workers: %s", args.gpus, " ".join(cmd))
    return subprocess.call(cmd)


def _submit(args: argparse.Namespace, site) -> int:
    """Run this command as a Slurm job of `--gpus` ranks on `site` (one srun task each, started
    by `speechfm.launch.rank`) and wait for it: the training never runs on the login node."""
    from speechfm.core.errors import SpeechfmError
    from speechfm.launch.slurm import SCRIPT_NAME, render_command_sbatch, submit_script

    out = args.out.resolve()
    text = render_command_sbatch("finetune", out, args.gpus, sys.argv[1:], site, Path.cwd())
    job_id, status = submit_script(out / SCRIPT_NAME, text, wait=True)
    if status != 0:
        raise SpeechfmError(f"the fine-tuning job {job_id} failed with status {status}",
                            path=out / f"slurm-{job_id}.out")
    model_dir = args.out / "model"
    log.info("fine-tuned CTC model: %s", model_dir)
    print(model_dir)
    return 0
