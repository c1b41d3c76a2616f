"""Service configuration: one dataclass, filled from the CLI or from SPEECHFM_SERVE_* variables."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from speechfm.core.errors import SpeechfmError

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
    tracking_uri: str | None = None
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
    dtype: str = "float32"
    """Inference precision: float32; bfloat16 (torch autocast; pays off only on CPUs with bf16
    units); int8 (torch: dynamic quantization of Linear layers; onnx: the MatMul-only graph)."""
    runtime: str = "torch"
    """torch (eager transformers) or onnx (ONNX Runtime on the folder's `speechfm export --onnx`
    graphs)."""
    threads: int = 0
    """Intra-op threads of each inference worker (0: every core this process may use)."""
    inference_workers: int = 0
    """Batches of one model that run at once, each in its own thread (0: onnx one per core; torch
    1, as torch's thread count is per process). ONNX Runtime's sleeping (not spinning) threads
    share the cores: two workers of two threads each beat one worker of two threads at 1 and 8
    clients, and two workers of one thread each at 1 client (docs/benchmarks.md)."""
    lm: Path | None = None
    """ARPA n-gram (from `speechfm lm`) for beam-search decoding; None: greedy."""
    alpha: float = 0.5
    """Language model weight of the beam search."""
    beta: float = 1.0
    """Word insertion bonus of the beam search."""
    beam_width: int = 50
    max_jobs: int = 16
    """Attribution jobs kept (queued, running or finished); beyond it new ones get 503."""
    max_queued_jobs: int = 2
    """Attribution jobs queued or running at once; beyond it new ones get 503."""
    attribution_threads: int = 1
    """Torch threads of the attribution worker process (it also runs at a lower CPU priority)."""
    max_stream_seconds: float = 3600.0
    """Audio one WebSocket stream may send."""
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


    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise SpeechfmError(f"unknown runtime '{self.runtime}'",
                                hint=f"choose one of {', '.join(RUNTIMES)}")
        if self.dtype not in RUNTIMES[self.runtime]:
            raise SpeechfmError(f"the {self.runtime} runtime has no dtype '{self.dtype}'",
                                hint=f"choose one of {', '.join(RUNTIMES[self.runtime])}")
        if self.lm is not None and not Path(self.lm).is_file():
            raise SpeechfmError("language model not found", path=self.lm,
                                hint="build one with 'speechfm lm'")


RUNTIMES = {"torch": ("float32", "bfloat16", "int8"), "onnx": ("float32", "int8")}


def _parse(name: str, raw: str) -> object:
    """Convert an environment string to the field's type (from its annotation)."""
    kind = next(f.type for f in fields(Settings) if f.name == name)
    if "Path" in kind:
        return Path(raw)
    if kind.startswith("tuple"):
        return tuple(x for x in raw.split(",") if x)
    if kind in ("int", "float"):
        return {"int": int, "float": float}[kind](raw)
    return raw


def cores() -> int:
    """The CPU cores this process may use."""
    import os

    return len(os.sched_getaffinity(0))


def inference_workers(settings: Settings) -> int:
    """Batches that run at once per model (`Settings.inference_workers`, 0 resolved by the runtime)."""
    if settings.inference_workers:
        return settings.inference_workers
    return cores() if settings.runtime == "onnx" else 1


def intra_op_threads(settings: Settings) -> int:
    """Intra-op threads of each inference worker (`Settings.threads`, 0: every core)."""
    return settings.threads or cores()
