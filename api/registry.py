"""The model registry: a models folder and/or MLflow registered models; nothing else is loaded.

A model is a transformers-format wav2vec2 CTC folder (`save_pretrained` of `Wav2Vec2ForCTC` and
`Wav2Vec2Processor`) with weights in safetensors. Weights are only read with
`use_safetensors=True` (no pickles), and only from folders the registry lists.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from api.errors import ApiError
from api.settings import NAME_RE, Settings

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
LISTING_TTL_S = 10.0


@dataclass(frozen=True)
class ModelEntry:
    """One servable model: its name, where it comes from, and (for folders) its path."""

    name: str
    source: str  # "dir" or "mlflow"
    path: Path | None = None
    version: str | None = None

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "version": self.version}


def is_model_dir(path: Path) -> bool:
    """A folder holds a servable model: config, safetensors weights and a tokenizer vocabulary."""
    return all((path / f).is_file() for f in ("config.json", WEIGHTS, "vocab.json"))


class Registry:
    """Lists the models of a folder and an MLflow store; loads each one once per process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._listing: dict[str, ModelEntry] = {}
        self._listed_at = -LISTING_TTL_S
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def entries(self, refresh: bool = False) -> dict[str, ModelEntry]:
        """Name -> entry; folders win over MLflow names; cached for a few seconds."""
        if refresh or time.monotonic() - self._listed_at > LISTING_TTL_S:
            listing = {e.name: e for e in self._dir_entries()}
            for entry in self._mlflow_entries():
                listing.setdefault(entry.name, entry)
            self._listing, self._listed_at = listing, time.monotonic()
        return self._listing

    def _dir_entries(self) -> list[ModelEntry]:
        root = self.settings.models_dir
        if root is None or not root.is_dir():
            return []
        return [ModelEntry(p.name, "dir", p) for p in sorted(root.iterdir())
                if NAME_RE.match(p.name) and p.is_dir() and is_model_dir(p)]

    def _mlflow_entries(self) -> list[ModelEntry]:
        uri = self.settings.mlflow_uri
        if not uri or (uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists()):
            return []
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=uri)
            out = []
            for rm in client.search_registered_models():
                versions = sorted(rm.latest_versions or [], key=lambda v: int(v.version))
                if NAME_RE.match(rm.name) and versions:
                    out.append(ModelEntry(rm.name, "mlflow", version=str(versions[-1].version)))
            return out
        except Exception as exc:  # noqa: BLE001 - a broken store must not take the service down
            log.warning("cannot list MLflow registered models at %s: %s", uri, exc)
            return []

    def get(self, name: str) -> LoadedModel:
        """The loaded model called `name` (loading it on first use); 404 if it is not listed."""
        if not NAME_RE.match(name):
            raise ApiError(422, "bad_name", "invalid model name", name=name[:100])
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            entry = self.entries().get(name) or self.entries(refresh=True).get(name)
            if entry is None:
                raise ApiError(404, "unknown_model", f"no model called '{name}' in the registry")
            path = entry.path if entry.source == "dir" else self._fetch_mlflow(entry)
            model = LoadedModel(name, path, self.settings.dtype)
            self._loaded[name] = model
            return model

    def loaded(self) -> list[str]:
        return sorted(self._loaded)

    def _fetch_mlflow(self, entry: ModelEntry) -> Path:
        """Download a registered model version's artifacts once; find the model folder inside."""
        import mlflow

        dest = self.settings.cache_dir / "mlflow" / entry.name / str(entry.version)
        if not dest.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            mlflow.set_tracking_uri(self.settings.mlflow_uri)
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{entry.name}/{entry.version}", dst_path=str(dest))
        for candidate in [dest, *sorted(p.parent for p in dest.rglob("config.json"))]:
            if is_model_dir(candidate):
                return candidate
        raise ApiError(409, "not_a_ctc_model", f"registered model '{entry.name}' version "
                       f"{entry.version} holds no wav2vec2 CTC folder with {WEIGHTS}")


class LoadedModel:
    """One model instance shared by all requests; the lock serialises use of its weights (hooks
    that attribution puts on layers must not leak into a concurrent transcription)."""

    def __init__(self, name: str, path: Path, dtype: str = "float32"):
        import torch

        from speechfm.core.ctc import load_ctc_model

        self.name = name
        self.path = path
        self.lock = threading.Lock()
        self.autocast = dtype == "bfloat16"
        self.model, self.processor = load_ctc_model(path, safetensors_only=True)
        self.quantized = dtype == "int8"
        if self.quantized:  # dynamic int8 Linear layers: faster on CPUs without bf16 units
            from speechfm.core.ctc import quantize_int8

            self.model = quantize_int8(self.model)
        self._torch = torch
        log.info("loaded model '%s' from %s (%.1fM parameters, %s)", name, path,
                 sum(p.numel() for p in self.model.parameters()) / 1e6, dtype)

    def transcribe(self, audios: list[np.ndarray]) -> list[str]:
        """Greedy CTC transcripts of a batch of 16 kHz clips, each exactly as if it ran alone
        (`speechfm.core.ctc.ctc_logits`: no clip's result depends on its batch)."""
        from speechfm.core.ctc import ctc_logits, greedy_texts

        torch = self._torch
        with self.lock, torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            logits = ctc_logits(self.model, self.processor.feature_extractor, audios)
        return greedy_texts(self.processor.tokenizer, logits)
