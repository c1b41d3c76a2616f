"""A fairseq training job as files: the full resolved config and how to run it."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speechfm.core.errors import SpeechfmError

log = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"
JOB_NAME = "job.json"
LOG_NAME = "train.log"
STOPPED_NAME = "STOPPED"
"""Marker written when a signal stopped the job early (holds the signal and update number)."""


@dataclass
class FairseqJob:
    """Where a fairseq job writes, how many ranks it has and where it reports (MLflow)."""

    save_dir: Path
    world_size: int = 1
    cpu: bool = True
    experiment: str = "pretrain"
    run_name: str = ""
    tracking_uri: str = ""
    stage: str = "pretrain"
    fast: dict[str, Any] = field(default_factory=dict)  # fast-path switches (engine/fairseq/fastpaths.py)

    @property
    def config_path(self) -> Path:
        return self.save_dir / CONFIG_NAME

    @property
    def job_path(self) -> Path:
        return self.save_dir / JOB_NAME

    @property
    def log_path(self) -> Path:
        return self.save_dir / LOG_NAME

    @property
    def stopped_path(self) -> Path:
        return self.save_dir / STOPPED_NAME


def update_freq(gpus: int, simulate_gpus: int | None) -> int:
    """Gradient accumulation that makes `gpus` ranks behave like `simulate_gpus` of them."""
    if gpus < 1:
        raise SpeechfmError(f"--gpus must be at least 1, not {gpus}")
    if simulate_gpus is None:
        return 1
    if simulate_gpus % gpus:
        raise SpeechfmError(f"cannot simulate {simulate_gpus} GPUs with {gpus}",
                            hint="--simulate-gpus must be a whole multiple of --gpus")
    return simulate_gpus // gpus


def distributed_settings(world_size: int, cpu: bool) -> dict[str, Any]:
    """Config sections that make fairseq run `world_size` ranks started by us (never spawned by
    fairseq, which counts CUDA devices), rendezvous through the environment (`env://`)."""
    settings: dict[str, Any] = {
        "common": {"cpu": cpu},
        "distributed_training": {"distributed_world_size": world_size},
    }
    if cpu:
        settings["common"].update(fp16=False, bf16=False)
    if world_size > 1:
        settings["distributed_training"].update(
            distributed_backend="gloo" if cpu else "nccl",
            distributed_init_method="env://",
            distributed_no_spawn=True,
        )
        if cpu:  # c10d DistributedDataParallel needs GPUs
            settings["distributed_training"]["ddp_backend"] = "legacy_ddp"
    return settings


def compose_config(*layers: dict[str, Any], overrides: list[str] = ()) -> dict[str, Any]:
    """Merge config layers and `section.key=value` overrides onto fairseq's own defaults.

    Returns the full resolved config (every field of the task, model, criterion ... dataclasses),
    so unknown keys and wrong types fail here, before anything is started. speechfm's own tasks
    (`engine/fairseq/userdir.py`) are known here and get their fairseq user dir."""
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.dataclass.initialize import add_defaults
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from speechfm.engine.fairseq import userdir

    userdir.register()
    try:
        cfg = OmegaConf.structured(FairseqConfig)
        for layer in layers:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(layer))
        for item in overrides:
            if "=" not in item:
                raise SpeechfmError(f"override '{item}' is not of the form section.key=value")
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        add_defaults(cfg)
        return userdir.with_user_dir(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    except OmegaConfBaseException as exc:
        raise SpeechfmError(f"invalid fairseq configuration: {exc}".splitlines()[0],
                            hint="check the preset and the KEY=VALUE overrides") from exc


def pretraining_args(pretraining: dict[str, Any]) -> dict[str, Any]:
    """The `task` and `model` sections of a pre-training config completed with fairseq's
    defaults: the `w2v_args` a pre-training checkpoint would carry (CTC fine-tuning of a randomly
    initialised encoder)."""
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config
    from fairseq.tasks.audio_pretraining import AudioPretrainingConfig
    from omegaconf import OmegaConf

    def complete(dataclass, section: dict[str, Any]) -> dict[str, Any]:
        merged = OmegaConf.merge(OmegaConf.structured(dataclass), {
            k: v for k, v in section.items() if k != "_name"})
        return OmegaConf.to_container(merged, enum_to_str=True) | {"_name": section["_name"]}

    task = complete(AudioPretrainingConfig, pretraining["task"] | {"data": "/"})
    return {"task": task, "model": complete(Wav2Vec2Config, pretraining["model"])}


def write_job(job: FairseqJob, config: dict[str, Any]) -> None:
    """Write `config.yaml` (the resolved fairseq config) and `job.json` into the save dir, after
    building any segment index the job's task reads that is missing or stale."""
    import yaml

    from speechfm.engine.fairseq.userdir import ensure_indexes

    ensure_indexes(config)
    job.save_dir.mkdir(parents=True, exist_ok=True)
    job.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    data = {**asdict(job), "save_dir": str(job.save_dir)}
    job.job_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    log.info("fairseq config written to %s", job.config_path)


def read_job(path: Path) -> tuple[FairseqJob, dict[str, Any]]:
    """Read `job.json` and the `config.yaml` beside it."""
    import yaml

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        job = FairseqJob(**{**data, "save_dir": Path(data["save_dir"])})
        config = yaml.safe_load(job.config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise SpeechfmError(f"cannot read the job description: {exc}", path=path) from exc
    return job, config
