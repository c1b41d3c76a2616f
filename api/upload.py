"""Upload limits: an ASGI middleware that answers 413 for bodies over the limit, and spooling an
upload to a temp file for decoding off the event loop."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import UploadFile
from fastapi.responses import JSONResponse

from speechfm_api import audio as audio_io
from speechfm_api.errors import ApiError, LimitExceeded


class UploadLimit:
    """ASGI middleware: bodies over `max_bytes` get 413 before or while they are read; `body`
    gives the answer's JSON for a request path."""

    def __init__(self, app: Any, max_bytes: int,
                 body: Callable[[str, ApiError], dict] = lambda path, error: error.body()):
        self.app = app
        self.max_bytes = max_bytes
        self.body = body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        error = LimitExceeded("max_upload_bytes", self.max_bytes,
                              f"upload larger than the limit of {self.max_bytes} bytes")
        answer = self.body(scope.get("path", ""), error)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await JSONResponse(answer, 413)(scope, receive, send)
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
                await JSONResponse(answer, 413)(scope, receive, send)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except LimitExceeded:
            if not replaced:
                await JSONResponse(answer, 413)(scope, receive, send)


async def decoded(upload: UploadFile, max_seconds: float, limit: str) -> np.ndarray:
    """Spool the upload to a temp file and decode it (`speechfm_api.audio.decode`), off the event loop."""
    def work() -> np.ndarray:
        with tempfile.NamedTemporaryFile(prefix="speechfm-upload-") as tmp:
            upload.file.seek(0)
            shutil.copyfileobj(upload.file, tmp)
            tmp.flush()
            return audio_io.decode(Path(tmp.name), max_seconds, limit)
    return await asyncio.get_running_loop().run_in_executor(None, work)
