"""Micro-batching: requests to one model share forward passes, run off the event loop.

Each model has a bounded queue of clips and one worker task. The worker takes the first clip,
waits at most `max_wait_ms` for more (up to `max_batch`), then runs the batch in a thread so the
event loop keeps serving. A full queue answers 503 instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from api.errors import ApiError
from api.registry import Decoded, LoadedModel

log = logging.getLogger(__name__)


class MicroBatcher:
    """Batches transcription of clips for one model."""

    def __init__(self, model: LoadedModel, executor: ThreadPoolExecutor, max_batch: int,
                 max_wait_ms: float, max_queue: int):
        self.model = model
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue(max_queue)
        self.batches = 0
        self.clips = 0
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def transcribe(self, clips: list[np.ndarray]) -> list[Decoded]:
        """Transcripts of `clips` (all queued at once, or 503 if the queue has no room)."""
        if self.queue.maxsize - self.queue.qsize() < len(clips):
            raise ApiError(503, "busy", "the model's queue is full; retry shortly",
                           queue=self.queue.maxsize)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in clips]
        for clip, fut in zip(clips, futures):
            self.queue.put_nowait((clip, fut))
        return list(await asyncio.gather(*futures))

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            batch = [(clip, fut) for clip, fut in batch if not fut.done()]  # cancelled requests
            if not batch:
                continue
            started = time.monotonic()
            try:
                results = await loop.run_in_executor(
                    self.executor, self.model.transcribe, [clip for clip, _ in batch])
            except Exception as exc:
                log.exception("batch of %d failed on model %s", len(batch), self.model.name)
                results = [exc] * len(batch)
            self.batches += 1
            self.clips += len(batch)
            log.debug("batch of %d clips (%.1f s of audio) in %.0f ms", len(batch),
                      sum(clip.size for clip, _ in batch) / 16000,
                      (time.monotonic() - started) * 1000)
            for (_, fut), result in zip(batch, results):
                if fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
