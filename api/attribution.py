"""Attribution of one uploaded clip: per-layer Integrated Gradients summary and per-layer LUR.

Runs as a job (id + status) because it takes many forward/backward passes. The IG itself is
`attribute_clip`, the one place to swap in the batched `speechfm.interpret` library.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from api.errors import ApiError
from api.registry import LoadedModel

log = logging.getLogger(__name__)

DEFAULT_STEPS = 20
MAX_STEPS = 100


def attribute_clip(model: LoadedModel, audio: np.ndarray, steps: int = DEFAULT_STEPS,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """IG (zero-audio baseline, captum LayerIntegratedGradients) of each predicted character's
    logit summed over frames w.r.t. each transformer layer's output, for one clip.

    Per layer: the share of neurons relevant for at least one character (mean attribution over the
    character's frames above +std or below -std across neurons), per-character counts, the mean
    absolute attribution and IG's completeness error. Layers run one at a time under the model's
    lock, so transcription batches interleave with a long attribution.
    """
    import torch
    from captum.attr import LayerIntegratedGradients

    net = model.model
    x = model.processor.feature_extractor(audio, sampling_rate=16000,
                                          return_tensors="pt").input_values
    with model.lock, torch.inference_mode():
        pred = net(x).logits.argmax(-1)[0]
    pad = model.processor.tokenizer.pad_token_id
    chars = [int(c) for c in torch.unique(pred) if int(c) != pad]
    layers = list(net.wav2vec2.encoder.layers)
    vocab = model.processor.tokenizer.convert_ids_to_tokens(chars)
    result: dict[str, Any] = {
        "model": model.name, "seconds": round(audio.size / 16000, 3), "steps": steps,
        "method": "captum LayerIntegratedGradients, zero-audio baseline",
        "characters": vocab, "layers": [],
    }

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return net(inputs).logits.sum(dim=1)  # one score per character per batch item

    for index, layer in enumerate(layers):
        summary: dict[str, Any] = {"layer": index + 1, "hidden": net.config.hidden_size}
        if chars:
            inputs = x.expand(len(chars), -1)
            with model.lock:
                attr, delta = LayerIntegratedGradients(forward, layer).attribute(
                    inputs, baselines=torch.zeros_like(inputs), target=chars, n_steps=steps,
                    internal_batch_size=steps, return_convergence_delta=True)
            attr = (attr[0] if isinstance(attr, (tuple, list)) else attr).detach()
            relevant = torch.zeros(attr.shape[-1], dtype=torch.bool)
            per_char = {}
            for k, (char, token) in enumerate(zip(chars, vocab)):
                mean = attr[k, pred == char].mean(dim=0)
                mask = (mean > mean.std()) | (mean < -mean.std())
                per_char[token] = int(mask.sum())
                relevant |= mask
            scale = attr.sum(dim=(1, 2)).abs().clamp_min(1e-12)
            summary.update(
                lur_percent=round(100 * float(relevant.float().mean()), 3),
                relevant_per_character=per_char,
                mean_abs_attribution=float(attr.abs().mean()),
                completeness_error=float((delta.abs() / scale).max()),
            )
        else:
            summary.update(lur_percent=0.0, relevant_per_character={},
                           mean_abs_attribution=0.0, completeness_error=0.0)
        result["layers"].append(summary)
        if progress:
            progress(index + 1, len(layers))
    return result


@dataclass
class Job:
    """An attribution job's public state."""

    id: str
    model: str
    status: str = "queued"  # queued, running, done, failed
    created: float = field(default_factory=time.time)
    finished: float | None = None
    progress: dict[str, int] = field(default_factory=lambda: {"done": 0, "total": 0})
    result: dict[str, Any] | None = None
    error: str | None = None

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class Jobs:
    """Attribution jobs run one at a time in their own thread; at most `max_jobs` are kept."""

    def __init__(self, max_jobs: int):
        self.max_jobs = max_jobs
        self.jobs: dict[str, Job] = {}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="attribution")
        self._lock = threading.Lock()

    def submit(self, model: LoadedModel, audio: np.ndarray, steps: int) -> Job:
        with self._lock:
            if len(self.jobs) >= self.max_jobs:
                finished = [j for j in self.jobs.values() if j.status in ("done", "failed")]
                if not finished:
                    raise ApiError(503, "busy", "too many attribution jobs; retry later",
                                   max_jobs=self.max_jobs)
                del self.jobs[min(finished, key=lambda j: j.created).id]
            job = Job(uuid.uuid4().hex, model.name)
            self.jobs[job.id] = job
        self._executor.submit(self._run, job, model, audio, steps)
        return job

    def _run(self, job: Job, model: LoadedModel, audio: np.ndarray, steps: int) -> None:
        job.status = "running"

        def progress(done: int, total: int) -> None:
            job.progress = {"done": done, "total": total}

        try:
            job.result = attribute_clip(model, audio, steps, progress)
            job.status = "done"
        except Exception as exc:
            log.exception("attribution job %s failed", job.id)
            job.error, job.status = f"{type(exc).__name__}: {exc}", "failed"
        job.finished = time.time()

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, "unknown_job", f"no job '{job_id}'")
        return job

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        if job.status in ("queued", "running"):
            raise ApiError(409, "job_running", "a queued or running job cannot be deleted")
        with self._lock:
            self.jobs.pop(job_id, None)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
