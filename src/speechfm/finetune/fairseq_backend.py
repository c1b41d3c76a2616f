"""CTC fine-tuning with fairseq (the full-scale recipe) through the pre-training launch layer,
ending, like the transformers backend, in a transformers CTC model folder (`speechfm export`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from speechfm.export import export_checkpoint

log = logging.getLogger(__name__)

FAIRSEQ_DIR = "fairseq"
MODEL_DIR = "model"


def scratch_encoder(preset: dict[str, Any]) -> dict[str, Any]:
    """`w2v_args` of a randomly initialised encoder: the pre-training preset's task and model,
    completed with fairseq's defaults (what a pre-training checkpoint would carry)."""
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config
    from fairseq.tasks.audio_pretraining import AudioPretrainingConfig
    from omegaconf import OmegaConf

    from speechfm.pretrain import load_preset

    pre = load_preset(preset.get("pretrain_preset", "tiny"))["fairseq"]

    def complete(dataclass, section: dict[str, Any]) -> dict[str, Any]:
        merged = OmegaConf.merge(OmegaConf.structured(dataclass), {
            k: v for k, v in section.items() if k != "_name"})
        return OmegaConf.to_container(merged, enum_to_str=True) | {"_name": section["_name"]}

    task = complete(AudioPretrainingConfig, pre["task"] | {"data": "/"})
    return {"task": task, "model": complete(Wav2Vec2Config, pre["model"])}


def train(data_dir: Path, out: Path, preset: dict[str, Any], init: Path | None = None,
          overrides: dict[str, Any] | None = None, nproc: int = 1, resume: bool = True,
          site: str = "local", tracking_uri: str | None = None) -> Path:
    """Fine-tune with fairseq into `out/fairseq`, export the best checkpoint to `out/model`."""
    import mlflow

    from speechfm.fairseq_ctc import train as fairseq_train
    from speechfm.pretrain.config import update_freq

    active = mlflow.active_run()
    best = fairseq_train(
        data_dir, out / FAIRSEQ_DIR, preset["fairseq"], init=init,
        overrides=[f"{k}={v}" for k, v in (overrides or {}).items()], nproc=nproc,
        update_freq=update_freq(nproc, preset.get("simulate_gpus") or nproc),
        w2v_args=None if init else scratch_encoder(preset), resume=resume, site=site,
        tracking_uri=tracking_uri, mlflow_run_id=active.info.run_id if active else None)
    model_dir = export_checkpoint(best, out / MODEL_DIR)
    log.info("best fairseq checkpoint %s exported to %s", best, model_dir)
    return model_dir
