"""Attribution jobs: start one for an uploaded clip, poll it, forget it (bearer token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import Response

from speechfm_api.attribution import DEFAULT_STEPS, MAX_STEPS
from speechfm_api.schemas import AUTH_ERRORS, ERRORS, ErrorBody, JobId, JobOut, Name
from speechfm_api.service import ServiceDep, authorized
from speechfm_api.settings import API_PREFIX
from speechfm_api.upload import decoded

router = APIRouter(prefix=API_PREFIX, tags=["attribution"], dependencies=[Depends(authorized)])


@router.post("/models/{name}/attributions", response_model=JobOut, status_code=202,
             responses={**ERRORS, **AUTH_ERRORS, 409: {"model": ErrorBody}})
async def attribution(name: Name, service: ServiceDep, file: Annotated[UploadFile, File()],
                      steps: Annotated[int, Form(ge=2, le=MAX_STEPS)] = DEFAULT_STEPS) -> dict:
    """Start an attribution job for one clip: per-layer IG summary and per-layer LUR, computed
    by a worker process with its own float32 copy of the model (whatever runtime and precision
    transcription uses), so transcription never waits for it. Poll `GET /v1/jobs/{id}`."""
    model = await service.model(name)
    audio = await decoded(file, service.settings.max_attribution_seconds,
                          "max_attribution_seconds")
    return service.jobs.submit(model, audio, steps).public()


@router.get("/jobs/{job_id}", response_model=JobOut,
            responses={404: {"model": ErrorBody}, **AUTH_ERRORS})
async def job(job_id: JobId, service: ServiceDep) -> dict:
    """Status (and, when done, result) of an attribution job."""
    return service.jobs.get(job_id).public()


@router.delete("/jobs/{job_id}", status_code=204,
               responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, **AUTH_ERRORS})
async def delete_job(job_id: JobId, service: ServiceDep) -> Response:
    """Forget a finished job."""
    service.jobs.delete(job_id)
    return Response(status_code=204)
