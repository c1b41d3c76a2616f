"""The state one app holds (registry, inference thread, batchers, jobs) and the dependencies that
routers get it through."""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.attribution import Jobs
from api.batcher import MicroBatcher
from api.errors import ApiError
from api.registry import LoadedModel, Registry
from api.settings import Settings
from speechfm.core.errors import require_tool


class Service:
    """One registry, one inference thread, a micro-batcher per model, the attribution jobs."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.registry = Registry(settings)
        self.inference = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self.batchers: dict[str, MicroBatcher] = {}
        self.jobs = Jobs(settings.max_jobs)
        self.ready = False

    async def start(self) -> None:
        """Check ffmpeg and load the preloaded models (off the event loop)."""
        require_tool("ffmpeg")
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

    def batcher(self, model: LoadedModel) -> MicroBatcher:
        """The micro-batcher of `model`, made on first use (inside the event loop)."""
        batcher = self.batchers.get(model.name)
        if batcher is None:
            s = self.settings
            batcher = self.batchers[model.name] = MicroBatcher(
                model, self.inference, s.max_batch, s.max_wait_ms, s.max_queue)
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
