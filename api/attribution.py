"""Attribution of one uploaded clip: per-layer Integrated Gradients summary and per-layer LUR.

Runs as a job (id + status) because it takes many forward/backward passes. `attribute_clip` is
the one place that calls the `lur` stage's library (`speechfm.interpret`).
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
METHOD = "gausslegendre"
MAX_STEPS = 100


def attribute_clip(model: LoadedModel, audio: np.ndarray, steps: int = DEFAULT_STEPS,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Per-layer IG summary and LUR of one clip, computed by the `lur` stage's library
    (`speechfm.interpret`: zero-audio baseline, each predicted character's logit summed over
    frames, w.r.t. every transformer layer's output, Gauss-Legendre steps as captum's default).

    Per layer: the share of neurons relevant for at least one character (mean attribution over the
    character's frames above +std or below -std across neurons), per-character counts and IG's
    completeness error. Runs under the model's lock (no transcription batch meanwhile).
    """
    import torch

    from speechfm.interpret import ig
    from speechfm.interpret.lur import (
        LurState,
        accumulate_utterance,
        layer_utilization,
        relevant_neurons,
    )

    net = model.model
    config = net.config
    layers = list(range(len(net.wav2vec2.encoder.layers)))
    x = model.processor.feature_extractor(audio, sampling_rate=16000,
                                          return_tensors="pt").input_values[0]
    state = LurState(layers=layers, hidden=config.hidden_size, vocab=config.vocab_size)
    alphas, weights = ig.quadrature(METHOD, steps)

    class Progress:  # the library reports one step per layer done
        done = 0

        def update(self, n: int) -> None:
            self.done += n
            if progress:
                progress(self.done, len(layers))

    with model.lock, torch.enable_grad():
        accumulate_utterance(state, ig.LayerTop(net), net, x, alphas, weights,
                             config.pad_token_id, progress=Progress())
    tokens = model.processor.tokenizer.convert_ids_to_tokens(list(range(config.vocab_size)))
    seen = [c for c in range(config.vocab_size) if state.counts[0, c] > 0]
    errors = np.array(state.completeness) if state.completeness else np.zeros(len(layers))
    errors = errors.reshape(len(layers), -1) if seen else np.zeros((len(layers), 1))
    result_layers = []
    for i, lur in enumerate(layer_utilization(state)):
        relevant = relevant_neurons(state.sums[i], state.counts[i]).sum(axis=1)
        means = state.sums[i, seen] / np.maximum(state.counts[i, seen, None], 1)
        result_layers.append({
            "layer": i + 1, "hidden": config.hidden_size, "lur_percent": round(lur, 3),
            "relevant_per_character": {tokens[c]: int(relevant[c]) for c in seen},
            "mean_abs_attribution": float(np.abs(means).mean()) if seen else 0.0,
            "completeness_error": float(errors[i].max()),
        })
    return {"model": model.name, "seconds": round(audio.size / 16000, 3), "steps": steps,
            "method": f"speechfm.interpret layer IG ({METHOD}), zero-audio baseline",
            "characters": [tokens[c] for c in seen], "layers": result_layers}


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
