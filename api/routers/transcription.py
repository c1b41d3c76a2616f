"""Transcription of uploads with a registry model (the service's own shape)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from speechfm_api.schemas import ERRORS, Name, Transcript
from speechfm_api.service import ServiceDep
from speechfm_api.settings import API_PREFIX

router = APIRouter(prefix=API_PREFIX)


@router.post("/models/{name}/transcribe", response_model=Transcript, tags=["models"],
             responses=ERRORS)
async def transcribe(name: Name, service: ServiceDep, file: Annotated[UploadFile, File(
        description="audio in any format ffmpeg reads")]) -> dict:
    """Transcribe an upload: decoded to 16 kHz mono, long audio split by the music-rejecting VAD
    into <= 30 s chunks, chunks batched with other requests to the same model; word and segment
    times from the CTC frames."""
    return (await service.transcribe(name, file)).body()
