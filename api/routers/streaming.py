"""Streaming transcription over a WebSocket: `/v1/models/{name}/stream`.

The client sends a JSON start message, `{"type": "start", "sample_rate": 16000, "format":
"s16le", "partials": false}` (the other keys optional, those values the only ones accepted), then
binary messages of 16 kHz mono signed 16-bit little-endian samples (any length), and
`{"type": "stop"}` when it is done. The service runs the music-rejecting VAD as audio arrives
(`speechfm.core.vad.SpeechStream`: its own silero state per stream) and answers each speech
region, once it has ended (0.3 s of non-speech) or reached 30 s, with
`{"type": "final", "start", "end", "text", "words"}` (seconds from the stream's start, in
order); with `"partials": true` also `{"type": "partial", "start", "end", "text"}` about once a
second while a region is open. After `stop`: the last finals, then `{"type": "done", "seconds"}`,
and the service closes. Errors: `{"type": "error", "error": code, "message"}`, then a close for
a bad start or a limit. Regions are transcribed through the model's micro-batcher, with uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from speechfm.core.constants import SAMPLE_RATE
from speechfm_api.errors import ApiError
from speechfm_api.registry import LoadedModel
from speechfm_api.service import Service
from speechfm_api.settings import API_PREFIX, NAME_RE

log = logging.getLogger(__name__)
router = APIRouter(prefix=API_PREFIX)

PARTIAL_SECONDS = 1.0
"""New audio in an open region between two partial results."""
KEEP_SECONDS = 5.0
"""Audio kept before the open region (the VAD pads regions backwards by 0.1 s only)."""


class Stream:
    """One client's stream: audio buffer, VAD, transcriptions in flight, answers in order."""

    def __init__(self, ws: WebSocket, service: Service, model: LoadedModel, partials: bool):
        from speechfm.core.vad import SpeechStream

        self.ws, self.service, self.model, self.partials = ws, service, model, partials
        self.vad = SpeechStream()
        self.buffer = np.zeros(0, dtype=np.int16)
        self.offset = 0  # stream sample index of buffer[0]
        self.answers: asyncio.Queue[asyncio.Task | None] = asyncio.Queue()
        self.partial_at = 0  # region length at the last partial
        self.partial_task: asyncio.Task | None = None
        self.carry = b""

    def transcription(self, start: int, end: int, kind: str) -> asyncio.Task:
        """A task transcribing stream samples start..end (cut from the buffer now)."""
        clip = self.buffer[start - self.offset: end - self.offset].astype(np.float32) / 32768.0
        return asyncio.create_task(self.transcribe(clip, start, end, kind))

    async def transcribe(self, clip: np.ndarray, start: int, end: int,
                         kind: str) -> dict[str, Any]:
        (decoded,) = await self.service.batcher(self.model).transcribe([clip])
        t0, step = start / SAMPLE_RATE, self.model.frame_seconds
        body = {"type": kind, "start": round(t0, 3), "end": round(end / SAMPLE_RATE, 3),
                "text": decoded.text}
        if kind == "final":
            body["words"] = [{"word": w.text, "start": round(t0 + w.start * step, 3),
                              "end": round(t0 + w.end * step, 3)} for w in decoded.words]
        return body

    async def feed(self, data: bytes) -> None:
        data = self.carry + data
        usable = len(data) // 2 * 2
        self.carry = data[usable:]
        pcm = np.frombuffer(data[:usable], dtype="<i2")
        self.buffer = np.concatenate([self.buffer, pcm])
        loop = asyncio.get_running_loop()
        regions = await loop.run_in_executor(None, self.vad.feed, pcm)
        self.finals(regions)
        await self.partial()
        self.trim()

    def finals(self, regions: list[tuple[int, int]]) -> None:
        for start, end in regions:
            self.answers.put_nowait(self.transcription(start, end, "final"))
            self.partial_at = 0

    async def partial(self) -> None:
        region = self.vad.open_region()
        if not self.partials or region is None or (self.partial_task
                                                   and not self.partial_task.done()):
            return
        length = region[1] - region[0]
        if length - self.partial_at >= PARTIAL_SECONDS * SAMPLE_RATE:
            self.partial_at = length
            self.partial_task = self.transcription(*region, "partial")
            self.answers.put_nowait(self.partial_task)

    def trim(self) -> None:
        """Drop audio no region can need any more (closed regions were cut out already)."""
        region = self.vad.open_region()
        keep_from = self.offset + len(self.buffer) - int(KEEP_SECONDS * SAMPLE_RATE)
        if region is not None:
            keep_from = min(keep_from, region[0])
        if keep_from > self.offset:
            self.buffer = self.buffer[keep_from - self.offset:]
            self.offset = keep_from

    async def send_answers(self) -> None:
        """Send finished transcriptions in the order they were started (until the client is
        gone)."""
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while (task := await self.answers.get()) is not None:
                try:
                    body = await task
                except ApiError as exc:
                    body = {"type": "error", "error": exc.code, "message": exc.message}
                except Exception as exc:  # the stream goes on
                    log.exception("stream transcription failed on model %s", self.model.name)
                    body = {"type": "error", "error": "failed", "message": str(exc)[:200]}
                await self.ws.send_json(body)


def message_type(text: str) -> object:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body.get("type") if isinstance(body, dict) else None


async def refuse(ws: WebSocket, code: str, message: str, close: int = 1008) -> None:
    await ws.send_json({"type": "error", "error": code, "message": message})
    await ws.close(close)


@router.websocket("/models/{name}/stream")
async def stream(ws: WebSocket, name: str) -> None:
    """Streaming transcription (see the module's docstring for the protocol)."""
    service: Service = ws.app.state.service
    await ws.accept()
    try:
        await run_stream(ws, service, name)
    except WebSocketDisconnect:
        log.info("stream to model '%s' ended by the client", name)


async def run_stream(ws: WebSocket, service: Service, name: str) -> None:
    start = await ws.receive()
    if start.get("type") == "websocket.disconnect":
        raise WebSocketDisconnect(start.get("code", 1000))
    options = json.loads(start["text"]) if message_type(start.get("text") or "") == "start" \
        else None
    if options is None:
        return await refuse(ws, "bad_start", 'the first message must be the JSON start message '
                            '{"type": "start", ...}')
    if options.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE or \
            options.get("format", "s16le") != "s16le":
        return await refuse(ws, "bad_format", "send 16 kHz mono s16le audio")
    if not NAME_RE.match(name):
        return await refuse(ws, "bad_name", "invalid model name")
    try:
        model = await service.model(name)
    except ApiError as exc:
        return await refuse(ws, exc.code, exc.message)
    loop = asyncio.get_running_loop()
    state = await loop.run_in_executor(None, lambda: Stream(ws, service, model,
                                                            bool(options.get("partials"))))
    await ws.send_json({"type": "started", "model": name, "sample_rate": SAMPLE_RATE})
    sender = asyncio.create_task(state.send_answers())
    limit = service.settings.max_stream_seconds * SAMPLE_RATE
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if message.get("bytes") is not None:
                if state.vad.samples + len(message["bytes"]) // 2 > limit:
                    await state.answers.put(None)
                    await sender
                    return await refuse(ws, "limit_exceeded", "stream longer than the limit "
                                        f"of {service.settings.max_stream_seconds:g} s", 1009)
                await state.feed(message["bytes"])
            elif message.get("text") is not None:
                if message_type(message["text"]) == "stop":
                    break
                await ws.send_json({"type": "error", "error": "bad_message",
                                    "message": 'text messages after the start: {"type": "stop"}'})
        state.finals(await loop.run_in_executor(None, state.vad.finish))
        await state.answers.put(None)
        await sender
        await ws.send_json({"type": "done", "seconds": round(state.vad.samples / SAMPLE_RATE, 3)})
        await ws.close()
    finally:  # a client gone mid-stream: stop its transcriptions and the sender
        sender.cancel()
        while not state.answers.empty():
            task = state.answers.get_nowait()
            if task is not None:
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
