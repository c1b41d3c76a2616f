"""Errors the service answers with: a status code and a JSON body naming what was wrong."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A client-visible error: `{"error": code, "message": ..., **extra}` with `status`."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class LimitExceeded(ApiError):
    """A request went over a configured limit (413 with the limit's name and value)."""

    def __init__(self, limit: str, value: float, message: str):
        super().__init__(413, "limit_exceeded", message, limit=limit, max=value)
