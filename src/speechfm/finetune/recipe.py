"""The fine-tuning recipe: a typed `FinetuneConfig` and `run(config)`, what `speechfm finetune`
calls after parsing, and what tests and notebooks call in-process.

The driver (`run`) writes both backends' inputs, exports a fairseq `init`, decides resume or
fresh start, then trains here (one transformers rank), or starts the ranks through
`speechfm.launch.ranks` where the site says: each transformers rank runs `train_rank`, each
fairseq rank the fairseq worker (`speechfm.finetune.fairseq_ctc`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from speechfm.core.errors import SpeechfmError

log = logging.getLogger(__name__)

RANK_ENTRY = "speechfm.finetune.recipe:train_rank"
SOURCE_STAMP = "speechfm_source.json"
"""Beside an exported `init`: which checkpoint it was exported from (re-exported when that
changes, e.g. after pre-training continued)."""


class FinetuneConfig(BaseModel):
    """One fine-tuning run: labeled data (`labeled`, or `train` + `valid`), the model (`preset`,
    `init`), the backend-neutral knobs (`speechfm.finetune.knobs`), text normalisation, ranks and
    where they run (`gpus`, `site`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    out: Path
    """Output folder: data/, checkpoints/ (or fairseq/), model/ (the transformers CTC model)."""
    labeled: Path | None = None
    train: Path | None = None
    valid: Path | None = None
    backend: Literal["transformers", "fairseq"] = "transformers"
    preset: str = "tiny"
    init: Path | None = None
    """Pre-trained model: a transformers folder or a fairseq checkpoint .pt (None: random)."""
    epochs: float = 0
    updates: int = 0
    learning_rate: float = 0
    freeze_feature_encoder: bool | None = None
    gpus: int = 1
    overrides: list[str] = Field(default_factory=list)
    """Backend settings `KEY=VALUE` (`--set`)."""
    alphabet: str | None = None
    keep: str = ""
    fold_accents: bool = True
    resume: bool = True
    """Resume the run in `out` when nothing but its length changed (False: start afresh)."""
    site: str = "local"
    tracking_uri: str | None = None
    experiment: str = "finetune"


def text_config(config: FinetuneConfig):
    from speechfm.core.text import FINNISH_ALPHABET, TextConfig

    return TextConfig(alphabet=config.alphabet or FINNISH_ALPHABET, extra=config.keep,
                      fold_accents=config.fold_accents)


def prepare_data(config: FinetuneConfig) -> Path:
    """Write both backends' inputs to `OUT/data` (done once, before any rank starts)."""
    from speechfm.core.labeled import split_tables
    from speechfm.finetune import data

    if config.labeled:
        sources = split_tables(config.labeled)
    elif config.train and config.valid:
        sources = {"train": config.train, "valid": config.valid}
    else:
        raise SpeechfmError("no labeled data given", hint="pass --labeled DIR or --train and --valid")
    if "valid" not in sources:
        raise SpeechfmError("no validation split", path=config.labeled or config.train,
                            hint="add valid.tsv, or pass --valid")
    return data.prepare(sources, config.out / "data", text_config(config))


def _settings(config: FinetuneConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the fine-tuning preset, the backend's settings the knobs and `--set` give)."""
    from speechfm.core.cliargs import parse_overrides
    from speechfm.core.presets import load_finetune
    from speechfm.finetune.knobs import Knobs

    preset = load_finetune(config.preset)
    knobs = Knobs.from_args(config)
    given = parse_overrides(list(config.overrides))
    overrides = (knobs.transformers(given) if config.backend == "transformers"
                 else knobs.fairseq(given, preset))
    return preset, overrides


def run(config: FinetuneConfig) -> Path:
    """Fine-tune as `config` says; returns the transformers CTC model folder (`OUT/model`)."""
    from speechfm.core.sites import load_site

    preset, overrides = _settings(config)
    site = load_site(config.site)
    prepare_data(config)
    if config.backend == "fairseq":
        with _tracking(config, preset, overrides) as run_:
            from speechfm.finetune import fairseq_ctc

            model_dir = fairseq_ctc.finetune(config.out / "data", config.out, preset,
                                             config.init, overrides, gpus=config.gpus,
                                             resume=config.resume, site=config.site,
                                             tracking_uri=config.tracking_uri,
                                             run_id=run_.run_id)
    else:
        init = _transformers_init(config.init, config.out, export=True)
        _settle_transformers(config, preset, overrides)
        if site.executor == "slurm" or config.gpus > 1:
            return _start_transformers_ranks(config, site)
        model_dir = _train_transformers(config, preset, overrides, init)
    log.info("fine-tuned CTC model: %s", model_dir)
    return model_dir


def transformers_ranks(config: FinetuneConfig, cpu: bool):
    """The ranks of a transformers run: each calls `train_rank` with the whole config."""
    from speechfm.launch.ranks import Ranks

    out = config.out.resolve()
    absolute = config.model_copy(update={k: getattr(config, k).resolve() for k in
                                         ("out", "labeled", "train", "valid", "init")
                                         if getattr(config, k) is not None})
    return Ranks(name=f"speechfm-finetune-{out.name}", out_dir=out, entry=RANK_ENTRY,
                 args={"config": json.loads(absolute.model_dump_json())},
                 world_size=config.gpus, cpu=cpu)


def _start_transformers_ranks(config: FinetuneConfig, site) -> Path:
    """`gpus` transformers ranks here or as one Slurm job, waited for: on a Slurm site the
    training never runs on the login node."""
    from speechfm.launch.ranks import no_gpu, ranks

    slurm = site.executor == "slurm"
    job = transformers_ranks(config, no_gpu(site))
    log.info("launching %d workers (%s)", config.gpus, "Slurm job" if slurm else "here")
    outcome = ranks(job, site, wait=True)
    if outcome.status != 0:
        where = (job.out_dir / f"slurm-{outcome.job_id}.out") if outcome.job_id else job.out_dir
        raise SpeechfmError(f"the fine-tuning ranks failed with status {outcome.status}",
                            path=where)
    model_dir = config.out / "model"
    log.info("fine-tuned CTC model: %s", model_dir)
    return model_dir


def train_rank(config: dict[str, Any]) -> int:
    """One transformers rank (the entry point `launch.rank` calls): the driver has written the
    data, exported `init` and settled the resume; the Trainer reads the rank environment."""
    cfg = FinetuneConfig(**config)
    preset, overrides = _settings(cfg)
    init = _transformers_init(cfg.init, cfg.out, export=False)
    _train_transformers(cfg, preset, overrides, init)
    return 0


def _train_transformers(config: FinetuneConfig, preset: dict[str, Any],
                        overrides: dict[str, Any], init: Path | None) -> Path:
    from speechfm.finetune import hf

    with _tracking(config, preset, overrides) as run_:
        return hf.train(config.out / "data", config.out, preset, init, overrides,
                        resume=config.resume, run=run_)


def _tracking(config: FinetuneConfig, preset: dict[str, Any], overrides: dict[str, Any]):
    """The MLflow run of this job (rank 0 only; other ranks record nothing)."""
    from speechfm.core.tracking import start_run

    params = {"backend": config.backend, "preset": preset, "init": str(config.init),
              "overrides": overrides, "gpus": config.gpus, "data": str(config.out / "data")}
    uri = config.tracking_uri if os.environ.get("RANK", "0") == "0" else "none"
    return start_run(config.experiment, run_name=f"{config.backend}-{config.out.name}",
                     params=params, tags={"stage": "finetune", "backend": config.backend},
                     uri=uri)


def _transformers_init(init: Path | None, out: Path, export: bool) -> Path | None:
    """A transformers pre-trained model folder; a fairseq checkpoint is exported first (again
    whenever the checkpoint changed since the last export) by the driver (`export`)."""
    if init is None or init.is_dir():
        return init
    from speechfm.core.checkpoint import export_checkpoint
    from speechfm.launch.resume import file_identity

    target = out / "init"
    source = file_identity(init)
    stamp = target / SOURCE_STAMP
    if (target / "config.json").exists() and stamp.exists() \
            and json.loads(stamp.read_text(encoding="utf-8")) == source:
        return target
    if not export:
        raise RuntimeError("rank started before the pre-trained model was exported")
    export_checkpoint(init, target)
    stamp.write_text(json.dumps(source) + "\n", encoding="utf-8")
    return target


def _settle_transformers(config: FinetuneConfig, preset: dict, overrides: dict) -> None:
    """Before any rank starts: resume the Trainer checkpoints in OUT/checkpoints only if nothing
    but the run's length changed (settings, ranks, pre-trained model, labeled data)."""
    from speechfm.finetune.data import digest
    from speechfm.finetune.knobs import EXECUTION_KEYS, LENGTH_KEYS
    from speechfm.launch.resume import file_identity, settle_run

    folder = config.out / "checkpoints"
    trainer = {k: v for k, v in (dict(preset["transformers"]) | overrides).items()
               if k not in LENGTH_KEYS + EXECUTION_KEYS}
    settings = {"model": preset.get("model"), "ctc": preset.get("ctc"), "transformers": trainer,
                "gpus": config.gpus, "init": file_identity(config.init),
                "data": digest(config.out / "data")}
    settle_run(folder, settings, has_checkpoint=any(folder.glob("checkpoint-*")),
               fresh=not config.resume)
