"""Transcription of uploads with a registry model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from api import audio as audio_io
from api.schemas import ERRORS, Name, Transcript
from api.service import ServiceDep
from api.settings import API_PREFIX
from api.upload import decoded

router = APIRouter(prefix=API_PREFIX)


@router.post("/models/{name}/transcribe", response_model=Transcript, tags=["models"],
             responses=ERRORS)
async def transcribe(name: Name, service: ServiceDep, file: Annotated[UploadFile, File(
        description="audio in any format ffmpeg reads")]) -> dict:
    """Transcribe an upload: decoded to 16 kHz mono, long audio split by VAD into <= 30 s
    chunks, chunks batched with other requests to the same model."""
    model = await service.model(name)
    audio = await decoded(file, service.settings.max_audio_seconds, "max_audio_seconds")
    spans = audio_io.split_speech(audio)
    clips = [audio[int(s * 16000): int(e * 16000)] for s, e in spans]
    texts = await service.batcher(model).transcribe(clips)
    chunks = [{"start": s, "end": e, "text": t} for (s, e), t in zip(spans, texts)]
    return {"model": name, "seconds": round(audio.size / 16000, 3),
            "text": " ".join(t for t in texts if t), "chunks": chunks}
