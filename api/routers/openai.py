"""OpenAI-compatible transcription: `POST /v1/audio/transcriptions`, as the official clients call
it (`OpenAI(base_url="http://HOST:PORT/v1")`); errors under `/v1/audio/` in OpenAI's error shape.

`model` is a registry model's name. `language`, `prompt` and `temperature` are accepted and
ignored (the models are monolingual CTC models decoded greedily or with the service's n-gram beam
search; `language` is echoed in `verbose_json`); `stream=true` is refused (use the WebSocket
endpoint); other fields of the OpenAI API are ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from speechfm_api.errors import ApiError
from speechfm_api.service import ServiceDep
from speechfm_api.settings import API_PREFIX

PREFIX = f"{API_PREFIX}/audio"
router = APIRouter(prefix=PREFIX, tags=["openai"])
Format = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["word", "segment"]


def error_body(message: str, code: str, status: int, param: str | None = None) -> dict:
    """OpenAI's error object."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def is_openai(request: Request) -> bool:
    return request.url.path.startswith(PREFIX + "/")


def openai_error(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.message, exc.code, exc.status), exc.status)


def openai_validation_error(exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    message = f"{param}: {first.get('msg', 'invalid request')}" if param else "invalid request"
    return JSONResponse(error_body(message, "invalid_request", 400, param), 400)


@router.post("/transcriptions", responses={
    200: {"content": {"application/json": {}, "text/plain": {}, "text/vtt": {}}},
    **{code: {"description": "OpenAI error object"} for code in (400, 404, 413, 503)}})
async def transcriptions(
    service: ServiceDep,
    file: Annotated[UploadFile, File(description="audio in any format ffmpeg reads")],
    model: Annotated[str, Form(max_length=100, description="a registry model's name")],
    response_format: Annotated[Format, Form()] = "json",
    timestamp_granularities: Annotated[list[Granularity] | None, Form(
        alias="timestamp_granularities[]",
        description="verbose_json only: word and/or segment (default segment)")] = None,
    language: Annotated[str | None, Form(max_length=20, description="accepted, ignored")] = None,
    prompt: Annotated[str | None, Form(max_length=2000, description="accepted, ignored")] = None,
    temperature: Annotated[float | None, Form(ge=0, le=1, description="accepted, ignored")] = None,
    stream: Annotated[bool, Form(description="must be false: stream over the WebSocket")] = False,
) -> Response:
    """Transcribe an upload, as OpenAI's endpoint does: `json` ({"text"}), `text`, `srt`, `vtt`
    or `verbose_json` (duration, segments and/or words with times from the CTC frames)."""
    if stream:
        raise ApiError(400, "stream_unsupported", "stream=true is not supported here; stream "
                       f"audio to the WebSocket {API_PREFIX}/models/{{name}}/stream")
    result = await service.transcribe(model, file)
    if response_format == "json":
        return JSONResponse({"text": result.text})
    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(result.srt())
    if response_format == "vtt":
        return PlainTextResponse(result.vtt(), media_type="text/vtt")
    return JSONResponse(result.verbose(set(timestamp_granularities or ["segment"]),
                                       language or "unknown"))
