"""One rank of a fairseq job: the entry point `run(job)` that `speechfm.launch.rank` calls
(the rank's environment is set by then).

Before fairseq's training main runs it applies the fixes fairseq 0.12 needs on current torch
(`fixes.py`), turns SIGTERM/SIGUSR1 into "save a checkpoint and stop", replaces a damaged
`checkpoint_last.pt` (rank 0, `checkpoints.py`), and on rank 0 logs the run to MLflow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from speechfm.core.errors import SpeechfmError
from speechfm.core.tracking import Run, enabled, start_run
from speechfm.engine.fairseq.checkpoints import ensure_loadable_last, restore_file
from speechfm.engine.fairseq.fixes import apply_torch_fixes
from speechfm.engine.fairseq.job import FairseqJob, read_job

log = logging.getLogger("speechfm.engine.fairseq.worker")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_stop: dict[str, Any] = {"signal": None}


def _on_signal(signum: int, frame: Any) -> None:
    if _stop["signal"] is not None:  # a second signal: stop now, without a checkpoint
        raise SystemExit(128 + signum)
    _stop["signal"] = signum
    log.warning("received %s: saving a checkpoint after this update, then stopping",
                signal.Signals(signum).name)


def _stop_requested(trainer: Any) -> bool:
    """True on every rank as soon as any rank got a stop signal (so all stop at the same update)."""
    import torch
    import torch.distributed as dist

    flag = _stop["signal"] is not None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        tensor = torch.tensor([1.0 if flag else 0.0], device=trainer.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        flag = bool(tensor.item())
    return flag


def _install_stop_hook(job: FairseqJob) -> None:
    """Wrap fairseq's per-update `validate_and_save`: on a stop signal save and stop training."""
    import fairseq_cli.train as fairseq_train
    from fairseq import checkpoint_utils

    original = fairseq_train.validate_and_save

    def validate_and_save_or_stop(cfg, trainer, task, epoch_itr, valid_subsets, end_of_epoch):
        if not _stop_requested(trainer):
            return original(cfg, trainer, task, epoch_itr, valid_subsets, end_of_epoch)
        updates = trainer.get_num_updates()
        checkpoint_utils.save_checkpoint(cfg.checkpoint, trainer, epoch_itr, None)
        name = signal.Signals(_stop["signal"]).name if _stop["signal"] else "a signal on another rank"
        if trainer.is_data_parallel_master:
            job.stopped_path.write_text(f"{name} {updates}\n", encoding="utf-8")
        log.warning("stopped by %s at update %d; run the same job again to resume", name, updates)
        return [None], True

    fairseq_train.validate_and_save = validate_and_save_or_stop
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)


class MlflowProgress:
    """Wraps a fairseq progress bar: every `log`/`print` of stats also goes to MLflow as metrics
    named `<tag>/<stat>` at the current update (train_inner every log interval, train, valid)."""

    def __init__(self, bar: Any):
        self._bar = bar

    def __iter__(self) -> Iterator[Any]:
        return iter(self._bar)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bar, name)

    def log(self, stats: dict[str, Any], tag: str | None = None, step: int | None = None) -> None:
        self._bar.log(stats, tag=tag, step=step)
        self._to_mlflow(stats, tag, step)

    def print(self, stats: dict[str, Any], tag: str | None = None, step: int | None = None) -> None:
        self._bar.print(stats, tag=tag, step=step)
        self._to_mlflow(stats, tag, step)

    @staticmethod
    def _to_mlflow(stats: dict[str, Any], tag: str | None, step: int | None) -> None:
        import mlflow
        from fairseq.logging.meters import AverageMeter

        metrics: dict[str, float] = {}
        for key, value in stats.items():
            if isinstance(value, AverageMeter):
                value = value.val
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "num_updates":
                metrics[f"{tag or 'train'}/{key}"] = float(value)
        if metrics:
            try:
                mlflow.log_metrics(metrics, step=step or 0)
            except Exception as exc:  # noqa: BLE001 - tracking must never stop training
                log.warning("MLflow metrics not logged: %s", exc)


def _install_mlflow_progress() -> None:
    from fairseq.logging import progress_bar

    original = progress_bar.progress_bar

    def progress_bar_with_mlflow(*args: Any, **kwargs: Any) -> MlflowProgress:
        return MlflowProgress(original(*args, **kwargs))

    progress_bar.progress_bar = progress_bar_with_mlflow


RUN_ID_NAME = "mlflow_run_id"


@contextlib.contextmanager
def mlflow_run(job: FairseqJob, config: dict[str, Any]) -> Iterator[Run]:
    """One MLflow run per job: created on the first start, continued when the job resumes (or a
    run its caller opened, e.g. the fine-tuning CLI); a job with tracking `none` records nothing."""
    from mlflow.exceptions import MlflowException

    id_file = job.save_dir / RUN_ID_NAME
    uri = job.tracking_uri or None
    if not enabled(uri):
        yield Run(None)
        return
    if id_file.exists():
        with start_run(job.experiment, uri=uri, run_id=id_file.read_text().strip()) as run:
            log.info("continuing MLflow run %s", run.run_id)
            try:
                run.log_params(config)
            except MlflowException as exc:  # a value changed on resume
                log.warning("MLflow params kept from the first start: %s", str(exc)[:200])
            run.log_artifact(job.config_path)
            yield run
    else:
        tags = {"speechfm.stage": job.stage, "speechfm.save_dir": str(job.save_dir)}
        with start_run(job.experiment, job.run_name or job.save_dir.name, params=config,
                       tags=tags, uri=uri) as run:
            id_file.write_text(f"{run.run_id}\n", encoding="utf-8")
            run.log_artifact(job.config_path)
            yield run


def _log_checkpoints(job: FairseqJob, run: Run) -> None:
    listing = {"save_dir": str(job.save_dir.resolve()),
               "checkpoints": sorted(p.name for p in job.save_dir.glob("checkpoint*.pt"))}
    run.log_dict(listing, "checkpoints.json")
    run.set_tag("speechfm.checkpoint_dir", listing["save_dir"])


def run_worker(job: FairseqJob, config: dict[str, Any]) -> int:
    """Run fairseq's training main as one rank of `job`."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world != job.world_size:
        log.error("this job needs %d ranks but %d were started", job.world_size, world)
        return 2

    apply_torch_fixes(job.cpu)
    from speechfm.engine.fairseq import userdir

    userdir.register()  # also for checkpoints whose w2v_args name a speechfm task
    config = userdir.with_user_dir(config)  # this installation's plugin, e.g. in a container
    import fairseq_cli.train as fairseq_train  # configures fairseq's logging to stdout
    from fairseq.distributed import utils as dist_utils
    from omegaconf import OmegaConf

    if rank == 0:
        handler = logging.FileHandler(job.log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s | %(message)s"))
        logging.getLogger().addHandler(handler)
        job.stopped_path.unlink(missing_ok=True)
    from speechfm.engine.fairseq.fastpaths import install

    install(job.fast, config)  # the job's fast paths (all off unless its preset or CLI asks)
    cfg = OmegaConf.create(config)
    if world > 1:
        cfg.distributed_training.distributed_rank = rank
        cfg.distributed_training.device_id = 0 if job.cpu else int(os.environ["LOCAL_RANK"])
    OmegaConf.set_struct(cfg, True)
    _install_stop_hook(job)

    if rank != 0:
        dist_utils.call_main(cfg, fairseq_train.main)
        return 0
    with mlflow_run(job, config) as run:
        if run:
            _install_mlflow_progress()
        try:
            dist_utils.call_main(cfg, fairseq_train.main)
        finally:
            _log_checkpoints(job, run)
    return 0


def run(job: str) -> int:
    """The entry point of one rank (`launch.Ranks.entry`): the fairseq job `job` (its job.json)."""
    save_job, config = read_job(Path(job))
    if os.environ.get("RANK", "0") == "0":
        last = restore_file(config)
        if last is not None:
            try:
                ensure_loadable_last(last.parent)
            except SpeechfmError as exc:
                log.error("%s", exc)
                return 2
    return run_worker(save_job, config)
