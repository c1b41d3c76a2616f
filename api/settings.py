"""Service configuration: one dataclass, filled from the CLI or from SPEECHFM_SERVE_* variables."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
"""Model, report and job names: no separators, no leading dot, so no path traversal."""
NAME_RE = re.compile(NAME_PATTERN)

ENV_PREFIX = "SPEECHFM_SERVE_"
API_PREFIX = "/v1"


@dataclass
class Settings:
    """Everything the service needs; limits are per request."""

    models_dir: Path | None = None
    """Folder of transformers-format wav2vec2 CTC model folders (one per model name)."""
    mlflow_uri: str | None = None
    """MLflow tracking URI whose registered models are served too (None: directory only)."""
    reports_dir: Path | None = None
    """Folder of LUR report folders (`lur.json`, `lur.svg`, `lur.png`) written by `speechfm lur`."""
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "speechfm" / "serve")
    """Where MLflow model artifacts are downloaded to."""
    token: str | None = None
    """Bearer token for attribution and writes; without one those endpoints answer 503."""
    max_upload_bytes: int = 50 * 1024 * 1024
    max_audio_seconds: float = 600.0
    max_attribution_seconds: float = 20.0
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 64
    """Chunks waiting per model; beyond it requests get 503 (back-pressure, not unbounded memory)."""
    max_jobs: int = 16
    """Attribution jobs kept (queued, running or finished); beyond it new ones get 503."""
    dtype: str = "float32"
    """Inference precision: float32; bfloat16 (autocast; pays off only on CPUs with bf16 units);
    int8 (dynamic quantization of Linear layers; transcription only, no attribution)."""
    preload: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from SPEECHFM_SERVE_<FIELD> variables, then explicit overrides (not None)."""
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _parse(name: str, raw: str) -> object:
    """Convert an environment string to the field's type."""
    if name in {"models_dir", "reports_dir", "cache_dir"}:
        return Path(raw)
    if name in {"max_upload_bytes", "max_batch", "max_queue", "max_jobs"}:
        return int(raw)
    if name in {"max_audio_seconds", "max_attribution_seconds", "max_wait_ms"}:
        return float(raw)
    if name == "preload":
        return tuple(x for x in raw.split(",") if x)
    return raw
