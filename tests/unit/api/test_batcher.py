"""The service's micro-batcher (`speechfm_api.batcher`): batches of one model run side by side on its
workers, every request gets its own clips' results, a failing batch fails only its requests and
frees its worker, a full queue answers 503. The model here is a recorder of the batches it is
given (what is under test is the scheduling, not a model)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from speechfm_api.batcher import MicroBatcher
from speechfm_api.errors import ApiError


class Recorder:
    """Answers each clip with its first sample after `seconds`; counts batches running at once."""

    name = "recorder"

    def __init__(self, seconds: float = 0.15, fail_on: float | None = None):
        self.seconds, self.fail_on = seconds, fail_on
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.sizes: list[int] = []

    def transcribe(self, clips: list[np.ndarray]) -> list[float]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.sizes.append(len(clips))
        try:
            time.sleep(self.seconds)
            if self.fail_on is not None and any(c[0] == self.fail_on for c in clips):
                raise RuntimeError("this batch fails")
            return [float(c[0]) for c in clips]
        finally:
            with self.lock:
                self.running -= 1


async def _serve(model: Recorder, workers: int, requests: list[list[float]], max_batch: int = 2,
                 max_queue: int = 64) -> list[object]:
    with ThreadPoolExecutor(workers) as pool:
        batcher = MicroBatcher(model, pool, max_batch, 5.0, max_queue, workers)
        try:
            return await asyncio.gather(
                *(batcher.transcribe([np.full(4, v, np.float32) for v in values])
                  for values in requests), return_exceptions=True)
        finally:
            await batcher.close()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_batches_run_side_by_side_on_the_workers_and_results_stay_with_their_clips(workers):
    model = Recorder()
    requests = [[float(i), float(i) + 0.5] if i % 3 == 0 else [float(i)] for i in range(12)]
    started = time.perf_counter()
    results = asyncio.run(_serve(model, workers, requests))
    elapsed = time.perf_counter() - started
    assert results == requests  # each request its own clips' answers, in order
    assert model.most == workers  # never more batches at once than workers, and that many
    assert max(model.sizes) <= 2 and sum(model.sizes) == 16
    assert elapsed < len(model.sizes) * model.seconds / workers + 1.0


def test_a_failing_batch_fails_only_its_requests_and_frees_its_worker():
    model = Recorder(fail_on=3.0)
    results = asyncio.run(_serve(model, 1, [[1.0], [3.0], [5.0], [7.0]], max_batch=1))
    assert results[0] == [1.0] and results[2] == [5.0] and results[3] == [7.0]
    assert isinstance(results[1], RuntimeError)


def test_a_full_queue_answers_503():
    model = Recorder(seconds=0.5)
    results = asyncio.run(_serve(model, 1, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], max_queue=4))
    assert results[0] == [1.0, 2.0, 3.0]
    assert isinstance(results[1], ApiError) and results[1].status == 503
