"""Micro-batching: requests to one model share forward passes, run off the event loop.

Each model has a bounded queue of clips and one task that forms batches. Once one of the model's
`workers` inference threads is free, it takes the first clip, waits at most `max_wait_ms` for more
(up to `max_batch`), then runs the batch in that thread so the event loop keeps serving; with
several workers (ONNX Runtime: one per core) batches run side by side. No clip's result depends
on its batch, so how clips are grouped changes speed only. A full queue answers 503 instead of
growing without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from speechfm_api.errors import ApiError
from speechfm_api.registry import Decoded, LoadedModel

log = logging.getLogger(__name__)


class MicroBatcher:
    """Batches transcription of clips for one model."""

    def __init__(self, model: LoadedModel, executor: ThreadPoolExecutor, max_batch: int,
                 max_wait_ms: float, max_queue: int, workers: int = 1):
        self.model = model
        self.executor = executor
        self.free = asyncio.Semaphore(workers)
        self.running: set[asyncio.Task] = set()
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
        while True:
            await self.free.acquire()  # a worker is free: form its batch
            try:
                batch = await self._gather()
            except BaseException:
                self.free.release()
                raise
            if not batch:
                self.free.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _gather(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        """The next batch: the first clip, then what arrives within `max_wait` (live ones)."""
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
        return [(clip, fut) for clip, fut in batch if not fut.done()]  # cancelled requests

    async def _run(self, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        started = time.monotonic()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.model.transcribe, [clip for clip, _ in batch])
        except Exception as exc:
            log.exception("batch of %d failed on model %s", len(batch), self.model.name)
            results = [exc] * len(batch)
        finally:
            self.free.release()
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
        for task in (self._task, *self.running):
            task.cancel()
        for task in (self._task, *self.running):
            try:
                await task
            except asyncio.CancelledError:
                pass
