"""Response bodies of the service, as pydantic models (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from speechfm_api.settings import NAME_PATTERN


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


class OpenAIModel(BaseModel):
    id: str = Field(description="the model's name (the `model` of transcription requests)")
    object: str = "model"
    created: int = Field(description="Unix time the weights were written or the version made")
    owned_by: str = Field(description="speechfm-dir or speechfm-mlflow")


class ModelList(BaseModel):
    """Both listings in one body: OpenAI's (`object`, `data`) and the service's (`models`)."""

    object: str = "list"
    data: list[OpenAIModel]
    models: list[ModelInfo]


class ModelDetail(OpenAIModel, ModelInfo):
    """One model as OpenAI's `GET /v1/models/{id}` and the service's listing describe it."""


class TimedWord(BaseModel):
    word: str
    start: float = Field(description="seconds from the start of the upload (CTC frames, 20 ms)")
    end: float


class Chunk(BaseModel):
    start: float = Field(description="seconds from the start of the upload")
    end: float
    text: str
    words: list[TimedWord]


class TimedText(BaseModel):
    start: float
    end: float
    text: str


class Transcript(BaseModel):
    model: str
    seconds: float
    text: str
    chunks: list[Chunk] = Field(description="what the model decoded: the whole upload up to 30 s, "
                                "else the VAD's speech regions")
    segments: list[TimedText] = Field(description="subtitle cues: a chunk's words split at pauses "
                                      "of 0.5 s or more, at most 10 s each")


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


Name = Annotated[str, PathParam(pattern=NAME_PATTERN, max_length=100)]
"""A model or report name in a path (validated before anything is looked up)."""
JobId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")]
