"""The fairseq backend of `speechfm finetune`: CTC fine-tuning (`audio_finetuning`,
`wav2vec_ctc`, letter targets; the full-scale recipe) through the same launch layer as
pre-training (same CPU fixes, local or Slurm/LUMI ranks, stop-and-resume, MLflow), ending, like
the transformers backend, in a transformers CTC model folder (`speechfm.core.checkpoint`).

`finetune()` is the backend's entry point; labeled data preparation (the `<split>.tsv/.ltr/.wrd`
files and `dict.ltr.txt`) is `speechfm.finetune.data`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from speechfm.core.checkpoint import export_checkpoint
from speechfm.core.curves import fairseq_curve, write_curve
from speechfm.core.errors import SpeechfmError
from speechfm.engine.fairseq import FairseqJob, compose_config, start, write_job
from speechfm.engine.fairseq.job import LOG_NAME, distributed_settings, update_freq
from speechfm.finetune.data import digest
from speechfm.launch.ranks import no_gpu
from speechfm.launch.resume import FAIRSEQ_LENGTH, fairseq_settings, file_identity, settle_run

log = logging.getLogger(__name__)

FAIRSEQ_DIR = "fairseq"
MODEL_DIR = "model"
LABELS = "ltr"
DATA_FILES = ("train.tsv", "valid.tsv", f"train.{LABELS}", f"valid.{LABELS}", f"dict.{LABELS}.txt")

CTC_DEFAULTS: dict[str, Any] = {
    "task": {"_name": "audio_finetuning", "labels": LABELS, "eval_wer": True,
             "eval_wer_post_process": "letter"},
    "model": {"_name": "wav2vec_ctc"},
    "criterion": {"_name": "ctc", "zero_infinity": True, "post_process": "letter"},
    "checkpoint": {"best_checkpoint_metric": "wer", "maximize_best_checkpoint_metric": False,
                   "no_epoch_checkpoints": True},
    "dataset": {"valid_subset": "valid"},
}
"""What makes a fairseq job CTC fine-tuning with letter targets, best checkpoint by WER; the
hyper-parameters (lr, updates, masking, ...) come from the caller's preset."""


def scratch_encoder(preset: dict[str, Any]) -> dict[str, Any]:
    """`w2v_args` of a randomly initialised encoder: the pre-training preset's task and model,
    completed with fairseq's defaults (what a pre-training checkpoint would carry)."""
    from speechfm.core.presets import load_pretrain
    from speechfm.engine.fairseq.job import pretraining_args

    return pretraining_args(load_pretrain(preset.get("pretrain_preset", "tiny"))["fairseq"])


def _pretraining_settings(init: Path) -> dict[str, Any]:
    """`normalize` of the pre-trained model: fine-tuning must feed audio the same way."""
    import torch

    try:
        # memory-mapped: only the pickled config is read, not the weights
        state = torch.load(init, map_location="cpu", weights_only=False, mmap=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise SpeechfmError(f"cannot read the pre-trained checkpoint: {exc}", path=init) from exc
    cfg = state.get("cfg") or {}
    task = cfg.get("task") or {}
    return {"task": {"normalize": bool(task.get("normalize", False))}}


def build_config(data_dir: Path, save_dir: Path, fairseq: dict[str, Any], init: Path | None,
                 nproc: int = 1, cpu: bool = True, update_freq: int = 1,
                 w2v_args: dict[str, Any] | None = None, overrides: list[str] = ()) -> dict[str, Any]:
    """The full fairseq config of a CTC fine-tuning run from `init` (a fairseq pre-training
    checkpoint) or, without one, from a randomly initialised encoder described by `w2v_args`
    (a pre-training config with `task` and `model` sections)."""
    data_dir = data_dir.resolve()
    missing = [name for name in DATA_FILES if not (data_dir / name).is_file()]
    if missing:
        raise SpeechfmError(f"labeled data is missing {', '.join(missing)}", path=data_dir,
                            hint="prepare it with 'speechfm finetune' (labeled data step)")
    run: dict[str, Any] = {
        "task": {"data": str(data_dir)},
        "checkpoint": {"save_dir": str(save_dir.resolve())},
        "optimization": {"update_freq": [update_freq]},
    }
    if init is not None:
        init = init.resolve()
        if not init.is_file():
            raise SpeechfmError("no such pre-trained checkpoint", path=init)
        run["model"] = {"w2v_path": str(init)}
        layers = [_pretraining_settings(init)]
    elif w2v_args is not None:
        run["model"] = {"w2v_args": w2v_args}
        layers = [{"task": {"normalize": bool(w2v_args["task"].get("normalize", False))}}]
    else:
        raise SpeechfmError("CTC fine-tuning needs a pre-trained checkpoint or w2v_args")
    return compose_config(CTC_DEFAULTS, fairseq, *layers, run, distributed_settings(nproc, cpu),
                          overrides=list(overrides))


def train(data_dir: Path, out: Path, fairseq: dict[str, Any], init: Path | None = None,
          overrides: list[str] = (), nproc: int = 1, cpu: bool | None = None,
          update_freq: int = 1, w2v_args: dict[str, Any] | None = None, resume: bool = True,
          site: str = "local", experiment: str = "finetune", tracking_uri: str | None = None,
          mlflow_run_id: str | None = None, wait: bool = True) -> Path:
    """Fine-tune with CTC into `out`; returns `out/checkpoint_best.pt` (lowest validation WER).

    The checkpoints in `out` are resumed when only the run's length changed (e.g. a raised
    max_update); any other change, or `resume=False`, starts afresh (the old folder kept as
    `out.previous`).

    `mlflow_run_id` makes rank 0 log into that (already created) run instead of a new one.
    With a Slurm `site` the job is submitted (and waited for when `wait`)."""
    from speechfm.core.sites import load_site
    from speechfm.core.tracking import tracking_uri as resolve_uri

    out = out.resolve()
    site_cfg = load_site(site)
    slurm = site_cfg.executor == "slurm"
    if cpu is None:
        cpu = no_gpu(site_cfg)
    config = build_config(data_dir, out, fairseq, init, nproc, cpu, update_freq, w2v_args,
                          overrides)
    # resume only if nothing but the length changed: settings, pre-trained model, labeled data
    length_free = build_config(data_dir, out, fairseq, init, nproc, cpu, update_freq, w2v_args,
                               [*overrides, *FAIRSEQ_LENGTH])
    settle_run(out, {"fairseq": fairseq_settings(length_free), "init": file_identity(init),
                     "data": digest(data_dir)},
               has_checkpoint=(out / "checkpoint_last.pt").exists(), fresh=not resume)
    job = FairseqJob(save_dir=out, world_size=nproc, cpu=cpu, experiment=experiment,
                     run_name=out.name, tracking_uri=resolve_uri(tracking_uri), stage="finetune")
    write_job(job, config)
    if mlflow_run_id:
        from speechfm.engine.fairseq.worker import RUN_ID_NAME

        (out / RUN_ID_NAME).write_text(mlflow_run_id + "\n", encoding="utf-8")
    outcome = start(job, site_cfg, wait=wait)
    status = outcome.status
    if slurm and not wait:
        log.info("submitted Slurm job %s", outcome.job_id)
        return out / "checkpoint_best.pt"
    if status != 0:
        raise SpeechfmError(f"fairseq fine-tuning failed with status {status}", path=job.log_path)
    best = out / "checkpoint_best.pt"
    if not best.exists() and not job.stopped_path.exists():
        raise SpeechfmError("training ended without a best checkpoint", path=job.log_path)
    return best


def finetune(data_dir: Path, out: Path, preset: dict[str, Any], init: Path | None = None,
             overrides: dict[str, Any] | None = None, gpus: int = 1, resume: bool = True,
             site: str = "local", tracking_uri: str | None = None,
             run_id: str | None = None) -> Path:
    """Fine-tune with fairseq into `out/fairseq` (rank 0 logging into MLflow run `run_id`),
    export the best checkpoint to `out/model`, and write `out/curve.tsv` and `out/metrics.json`
    from its log."""
    best = train(
        data_dir, out / FAIRSEQ_DIR, preset["fairseq"], init=init,
        overrides=[f"{k}={v}" for k, v in (overrides or {}).items()], nproc=gpus,
        update_freq=update_freq(gpus, preset.get("simulate_gpus") or gpus),
        w2v_args=None if init else scratch_encoder(preset), resume=resume, site=site,
        tracking_uri=tracking_uri, mlflow_run_id=run_id)
    model_dir = export_checkpoint(best, out / MODEL_DIR)
    log.info("best fairseq checkpoint %s exported to %s", best, model_dir)
    log_path = out / FAIRSEQ_DIR / LOG_NAME
    if log_path.exists():  # OUT/curve.tsv and metrics.json, as the transformers backend writes
        write_curve(fairseq_curve(log_path), out)
    return model_dir
