"""Response bodies of the service, as pydantic models (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from api.settings import NAME_PATTERN


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


Name = Annotated[str, PathParam(pattern=NAME_PATTERN, max_length=100)]
"""A model or report name in a path (validated before anything is looked up)."""
JobId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")]
