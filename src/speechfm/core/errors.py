"""User-facing errors: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class SpeechfmError(Exception):
    """An error the user can act on: what went wrong, which file, what to do."""

    def __init__(self, message: str, path: str | Path | None = None, hint: str | None = None):
        self.path = str(path) if path is not None else None
        self.hint = hint
        text = f"{self.path}: {message}" if self.path else message
        if hint:
            text = f"{text} ({hint})"
        super().__init__(text)


class ToolMissingError(SpeechfmError):
    """An external program (ffmpeg, espeak-ng, ...) is not installed."""

    def __init__(self, tool: str):
        super().__init__(f"'{tool}' was not found on PATH", hint="run 'make setup' to install it")


def require_tool(tool: str) -> str:
    """Return the absolute path of an external program or raise a clear error."""
    import shutil

    found = shutil.which(tool)
    if found is None:
        raise ToolMissingError(tool)
    return found
