"""The state one app holds (registry, inference thread, batchers, jobs) and the dependencies that
routers get it through."""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import Depends, Request, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.errors import require_tool
from speechfm_api.attribution import Jobs
from speechfm_api.audio import split_speech
from speechfm_api.batcher import MicroBatcher
from speechfm_api.errors import ApiError
from speechfm_api.registry import LoadedModel, Registry
from speechfm_api.settings import Settings, inference_workers, intra_op_threads
from speechfm_api.transcripts import Transcription, transcription
from speechfm_api.upload import decoded


class Service:
    """One registry, the inference threads, a micro-batcher per model, the attribution jobs."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.registry = Registry(settings)
        self.workers = inference_workers(settings)
        self.inference = ThreadPoolExecutor(self.workers, thread_name_prefix="inference")
        self.batchers: dict[str, MicroBatcher] = {}
        self.jobs = Jobs(settings.max_jobs, settings.max_queued_jobs, settings.attribution_threads)
        self.ready = False

    async def start(self) -> None:
        """Check ffmpeg and load the preloaded models (off the event loop)."""
        require_tool("ffmpeg")
        if self.settings.runtime == "torch" and self.settings.threads:
            import torch

            torch.set_num_threads(intra_op_threads(self.settings))
        for name in self.settings.preload:
            await self.model(name)
        self.ready = True

    async def stop(self) -> None:
        for batcher in self.batchers.values():
            await batcher.close()
        self.jobs.shutdown()
        self.inference.shutdown(wait=False, cancel_futures=True)

    async def model(self, name: str) -> LoadedModel:
        """The loaded model `name` (loading it on first use, in a thread)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.registry.get, name)

    async def transcribe(self, name: str, upload: UploadFile) -> Transcription:
        """An upload to model `name`, decoded, cut by the VAD (off the event loop), its chunks
        micro-batched with other requests'."""
        model = await self.model(name)
        audio = await decoded(upload, self.settings.max_audio_seconds, "max_audio_seconds")
        spans = await asyncio.get_running_loop().run_in_executor(None, split_speech, audio)
        clips = [audio[round(s * SAMPLE_RATE): round(e * SAMPLE_RATE)] for s, e in spans]
        return transcription(model, audio.size, spans, await self.batcher(model).transcribe(clips))

    def batcher(self, model: LoadedModel) -> MicroBatcher:
        """The micro-batcher of `model`, made on first use (inside the event loop)."""
        batcher = self.batchers.get(model.name)
        if batcher is None:
            s = self.settings
            batcher = self.batchers[model.name] = MicroBatcher(
                model, self.inference, s.max_batch, s.max_wait_ms, s.max_queue, self.workers)
        return batcher


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]
BEARER = HTTPBearer(auto_error=False, description="token from the service configuration")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


def authorized(creds: Credentials, service: ServiceDep) -> None:
    """The bearer token check of attribution and jobs (403 when no token is configured)."""
    token = service.settings.token
    if not token:
        raise ApiError(403, "disabled", "no token is configured; this endpoint is disabled")
    if creds is None or not secrets.compare_digest(creds.credentials.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "a valid bearer token is required")
