"""The FastAPI app: the service's state, its routers (`speechfm_api.routers`), error answers and limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from speechfm_api.errors import ApiError
from speechfm_api.routers import (
    attribution,
    openai,
    page,
    reports,
    service,
    streaming,
    transcription,
)
from speechfm_api.service import Service
from speechfm_api.settings import Settings
from speechfm_api.upload import UploadLimit


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    if openai.is_openai(request):
        return openai.openai_error(exc)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), exc.status, headers=headers)


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    if openai.is_openai(request):
        return openai.openai_validation_error(exc)
    return await request_validation_exception_handler(request, exc)


def limit_body(path: str, error: ApiError) -> dict:
    """The 413 of the upload limit, in the shape of the route it hit."""
    if path.startswith(openai.PREFIX + "/"):
        return openai.error_body(error.message, error.code, error.status)
    return error.body()


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
                  description="Transcription (also OpenAI-compatible and streaming), "
                  "Integrated-Gradients attribution and LUR reports for wav2vec 2.0 CTC models "
                  "from the speechfm registry.")
    app.state.service = state
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes, body=limit_body)
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    for router in (page.router, service.router, transcription.router, openai.router,
                   streaming.router, attribution.router, reports.router):
        app.include_router(router)
    return app
