"""The FastAPI app: the service's state, its routers (`api.routers`), error answers and limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from api.errors import ApiError
from api.routers import attribution, page, reports, service, transcription
from api.service import Service
from api.settings import Settings
from api.upload import UploadLimit


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), exc.status, headers=headers)


def create_app(settings: Settings) -> FastAPI:
    """The service for `settings`: one `Service` (registry, inference thread, batchers, jobs)
    shared by the routers through `app.state.service`."""
    state = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        yield
        await state.stop()

    app = FastAPI(title="speechfm", version="1", lifespan=lifespan,
                  description="Transcription, Integrated-Gradients attribution and LUR reports "
                  "for wav2vec 2.0 CTC models from the speechfm registry.")
    app.state.service = state
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    app.add_exception_handler(ApiError, api_error)
    for router in (page.router, service.router, transcription.router, attribution.router,
                   reports.router):
        app.include_router(router)
    return app
