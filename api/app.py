"""The FastAPI app: versioned routes for health, models, transcription, attribution, reports."""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from api import audio as audio_io
from api.attribution import DEFAULT_STEPS, MAX_STEPS, Jobs
from api.batcher import MicroBatcher
from api.errors import ApiError, LimitExceeded
from api.registry import LoadedModel, Registry
from api.reports import PLOTS, list_reports, load, page, report_dir
from api.settings import API_PREFIX, NAME_PATTERN, Settings
from speechfm.core.errors import require_tool

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"

Name = Annotated[str, PathParam(pattern=NAME_PATTERN, max_length=100)]
JobId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")]
BEARER = HTTPBearer(auto_error=False, description="token from the service configuration")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable code, e.g. limit_exceeded, not_audio")
    message: str
    limit: str | None = Field(None, description="the limit exceeded (413 answers)")


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    models: int
    loaded: list[str]
    batching: dict[str, dict[str, int]] = Field(
        description="per model: forward passes run and clips transcribed since start-up")


class ModelInfo(BaseModel):
    name: str
    source: str = Field(description="'dir' (models folder) or 'mlflow' (registered model)")
    version: str | None = None


class ModelList(BaseModel):
    models: list[ModelInfo]


class Chunk(BaseModel):
    start: float = Field(description="seconds from the start of the upload")
    end: float
    text: str


class Transcript(BaseModel):
    model: str
    seconds: float
    text: str
    chunks: list[Chunk]


class JobOut(BaseModel):
    id: str
    model: str
    status: str = Field(description="queued, running, done or failed")
    created: float
    finished: float | None = None
    progress: dict[str, int]
    result: dict[str, Any] | None = None
    error: str | None = None


class ReportSummary(BaseModel):
    name: str
    model: str
    layers: list[int]
    lur_percent: list[float]
    links: dict[str, str]


class ReportList(BaseModel):
    reports: list[ReportSummary]


ERRORS = {code: {"model": ErrorBody} for code in (404, 413, 422, 503)}
AUTH_ERRORS = {code: {"model": ErrorBody} for code in (401, 403)}


class UploadLimit:
    """ASGI middleware: bodies over `max_bytes` get 413 before or while they are read."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        error = LimitExceeded("max_upload_bytes", self.max_bytes,
                              f"upload larger than the limit of {self.max_bytes} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await JSONResponse(error.body(), 413)(scope, receive, send)
        seen = 0
        replaced = False  # once over the limit, whatever the app answers becomes the 413

        async def counting_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise error
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal replaced
            if seen <= self.max_bytes:
                await send(message)
            elif message["type"] == "http.response.start" and not replaced:
                replaced = True
                await JSONResponse(error.body(), 413)(scope, receive, send)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except LimitExceeded:
            if not replaced:
                await JSONResponse(error.body(), 413)(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    """The service for `settings`: one registry, one inference thread, batchers per model."""
    registry = Registry(settings)
    inference = ThreadPoolExecutor(1, thread_name_prefix="inference")
    batchers: dict[str, MicroBatcher] = {}
    jobs = Jobs(settings.max_jobs)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        require_tool("ffmpeg")
        for name in settings.preload:
            await loop.run_in_executor(None, registry.get, name)
        state["ready"] = True
        yield
        for batcher in batchers.values():
            await batcher.close()
        jobs.shutdown()
        inference.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="speechfm", version="1", lifespan=lifespan,
                  description="Transcription, Integrated-Gradients attribution and LUR reports "
                  "for wav2vec 2.0 CTC models from the speechfm registry.")
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), exc.status, headers=headers)

    def authorized(creds: Credentials) -> None:
        if not settings.token:
            raise ApiError(403, "disabled", "no token is configured; this endpoint is disabled")
        if creds is None or not secrets.compare_digest(creds.credentials.encode(),
                                                       settings.token.encode()):
            raise ApiError(401, "unauthorized", "a valid bearer token is required")

    async def model_for(name: str) -> LoadedModel:
        return await asyncio.get_running_loop().run_in_executor(None, registry.get, name)

    async def decoded(upload: UploadFile, max_seconds: float, limit: str) -> np.ndarray:
        """Spool the upload to a temp file and decode it with ffmpeg, off the event loop."""
        def work() -> np.ndarray:
            with tempfile.NamedTemporaryFile(prefix="speechfm-upload-") as tmp:
                upload.file.seek(0)
                shutil.copyfileobj(upload.file, tmp)
                tmp.flush()
                return audio_io.decode(Path(tmp.name), max_seconds, limit)
        return await asyncio.get_running_loop().run_in_executor(None, work)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @app.get(f"{API_PREFIX}/health", response_model=Health, tags=["service"])
    async def health() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get(f"{API_PREFIX}/ready", response_model=Ready, tags=["service"],
             responses={503: {"model": Ready}})
    async def ready() -> JSONResponse:
        """Readiness: started, preloaded models loaded."""
        models = await asyncio.get_running_loop().run_in_executor(None, registry.entries)
        body = {"ready": state["ready"], "models": len(models), "loaded": registry.loaded(),
                "batching": {name: {"batches": b.batches, "clips": b.clips}
                             for name, b in batchers.items()}}
        return JSONResponse(body, 200 if state["ready"] else 503)

    @app.get(f"{API_PREFIX}/models", response_model=ModelList, tags=["models"])
    async def models() -> dict:
        """Models in the registry (models folder and MLflow registered models)."""
        entries = await asyncio.get_running_loop().run_in_executor(None, registry.entries, True)
        return {"models": [e.public() for e in entries.values()]}

    @app.post(f"{API_PREFIX}/models/{{name}}/transcribe", response_model=Transcript,
              tags=["models"], responses=ERRORS)
    async def transcribe(name: Name, file: Annotated[UploadFile, File(
            description="audio in any format ffmpeg reads")]) -> dict:
        """Transcribe an upload: decoded to 16 kHz mono, long audio split by VAD into <= 30 s
        chunks, chunks batched with other requests to the same model."""
        model = await model_for(name)
        audio = await decoded(file, settings.max_audio_seconds, "max_audio_seconds")
        spans = audio_io.split_speech(audio)
        batcher = batchers.get(name)
        if batcher is None:
            batcher = batchers[name] = MicroBatcher(model, inference, settings.max_batch,
                                                    settings.max_wait_ms, settings.max_queue)
        clips = [audio[int(s * 16000): int(e * 16000)] for s, e in spans]
        texts = await batcher.transcribe(clips)
        chunks = [{"start": s, "end": e, "text": t} for (s, e), t in zip(spans, texts)]
        return {"model": name, "seconds": round(audio.size / 16000, 3),
                "text": " ".join(t for t in texts if t), "chunks": chunks}

    @app.post(f"{API_PREFIX}/models/{{name}}/attributions", response_model=JobOut,
              status_code=202, tags=["attribution"],
              responses={**ERRORS, **AUTH_ERRORS, 409: {"model": ErrorBody}},
              dependencies=[Depends(authorized)])
    async def attribution(name: Name, file: Annotated[UploadFile, File()],
                          steps: Annotated[int, Form(ge=2, le=MAX_STEPS)] = DEFAULT_STEPS,
                          ) -> dict:
        """Start an attribution job for one clip: per-layer IG summary and per-layer LUR.
        Poll `GET /v1/jobs/{id}` for the result."""
        model = await model_for(name)
        if model.quantized:
            raise ApiError(409, "quantized", "attribution needs float weights; this service "
                           "runs the model in int8 (start it with --dtype float32)")
        audio = await decoded(file, settings.max_attribution_seconds,
                              "max_attribution_seconds")
        return jobs.submit(model, audio, steps).public()

    @app.get(f"{API_PREFIX}/jobs/{{job_id}}", response_model=JobOut, tags=["attribution"],
             responses={404: {"model": ErrorBody}, **AUTH_ERRORS},
             dependencies=[Depends(authorized)])
    async def job(job_id: JobId) -> dict:
        """Status (and, when done, result) of an attribution job."""
        return jobs.get(job_id).public()

    @app.delete(f"{API_PREFIX}/jobs/{{job_id}}", status_code=204, tags=["attribution"],
                responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, **AUTH_ERRORS},
                dependencies=[Depends(authorized)])
    async def delete_job(job_id: JobId) -> Response:
        """Forget a finished job."""
        jobs.delete(job_id)
        return Response(status_code=204)

    @app.get(f"{API_PREFIX}/reports", response_model=ReportList, tags=["reports"])
    async def reports() -> dict:
        """LUR reports written by `speechfm lur`."""
        return {"reports": list_reports(settings.reports_dir)}

    @app.get(f"{API_PREFIX}/reports/{{name}}", tags=["reports"], responses=ERRORS)
    async def report(name: Name) -> dict:
        """A report's lur.json, as written."""
        return load(report_dir(settings.reports_dir, name))

    @app.get(f"{API_PREFIX}/reports/{{name}}/page", response_class=HTMLResponse,
             tags=["reports"], responses=ERRORS)
    async def report_page(name: Name) -> HTMLResponse:
        """A report as an HTML page: plot and LUR table."""
        path = report_dir(settings.reports_dir, name)
        return HTMLResponse(page(name, load(path), (path / PLOTS["svg"][0]).is_file()))

    def plot_route(filename: str, media: str) -> Callable[[str], FileResponse]:
        def plot(name: Name) -> FileResponse:
            path = report_dir(settings.reports_dir, name) / filename
            if not path.is_file():
                raise ApiError(404, "no_plot", f"report '{name}' has no {filename}")
            return FileResponse(path, media_type=media)
        return plot

    for kind, (filename, media) in PLOTS.items():
        app.get(f"{API_PREFIX}/reports/{{name}}/{filename}", tags=["reports"],
                response_class=FileResponse, responses={**ERRORS, 200: {"content": {media: {}}}},
                summary=f"A report's {kind.upper()} plot")(plot_route(filename, media))

    return app
