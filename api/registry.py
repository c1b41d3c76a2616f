"""The model registry: a models folder and/or MLflow registered models; nothing else is loaded.

A model is a transformers-format wav2vec2 CTC folder (`save_pretrained` of `Wav2Vec2ForCTC` and
`Wav2Vec2Processor`) with weights in safetensors. Weights are only read with
`use_safetensors=True` (no pickles), and only from folders the registry lists.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechfm.core.ctc import Word
from speechfm.core.errors import SpeechfmError
from speechfm_api.errors import ApiError
from speechfm_api.settings import NAME_RE, Settings, intra_op_threads

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
    created: int = field(default=0, compare=False)  # Unix seconds: folder written, version made

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "version": self.version}

    def openai(self) -> dict[str, Any]:
        """The entry as an OpenAI model object (`id`, `object`, `created`, `owned_by`)."""
        return {"id": self.name, "object": "model", "created": self.created,
                "owned_by": f"speechfm-{self.source}"}


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
        return [ModelEntry(p.name, "dir", p, created=int((p / WEIGHTS).stat().st_mtime))
                for p in sorted(root.iterdir())
                if NAME_RE.match(p.name) and p.is_dir() and is_model_dir(p)]

    def _mlflow_entries(self) -> list[ModelEntry]:
        uri = self.settings.tracking_uri
        if not uri or (uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists()):
            return []
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=uri)
            out = []
            for rm in client.search_registered_models():
                versions = sorted(rm.latest_versions or [], key=lambda v: int(v.version))
                if NAME_RE.match(rm.name) and versions:
                    latest = versions[-1]
                    out.append(ModelEntry(rm.name, "mlflow", version=str(latest.version),
                                          created=int((latest.creation_timestamp or 0) / 1000)))
            return out
        except Exception as exc:  # noqa: BLE001 - a broken store must not take the service down
            log.warning("cannot list MLflow registered models at %s: %s", uri, exc)
            return []

    def entry(self, name: str) -> ModelEntry:
        """The listed model called `name`; 422 for a bad name, 404 if it is not listed."""
        if not NAME_RE.match(name):
            raise ApiError(422, "bad_name", "invalid model name", name=name[:100])
        entry = self.entries().get(name) or self.entries(refresh=True).get(name)
        if entry is None:
            raise ApiError(404, "unknown_model", f"no model called '{name}' in the registry")
        return entry

    def get(self, name: str) -> LoadedModel:
        """The loaded model called `name` (loading it on first use); 404 if it is not listed."""
        if not NAME_RE.match(name):
            raise ApiError(422, "bad_name", "invalid model name", name=name[:100])
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            entry = self.entry(name)
            path = entry.path if entry.source == "dir" else self._fetch_mlflow(entry)
            try:
                model = LoadedModel(name, path, self.settings)
            except SpeechfmError as exc:  # e.g. --runtime onnx and no export in the folder
                raise ApiError(409, "model_unusable", f"model '{name}' cannot be served as "
                               f"configured: {exc}") from None
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
            mlflow.set_tracking_uri(self.settings.tracking_uri)
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{entry.name}/{entry.version}", dst_path=str(dest))
        for candidate in [dest, *sorted(p.parent for p in dest.rglob("config.json"))]:
            if is_model_dir(candidate):
                return candidate
        raise ApiError(409, "not_a_ctc_model", f"registered model '{entry.name}' version "
                       f"{entry.version} holds no wav2vec2 CTC folder with {WEIGHTS}")


@dataclass
class Decoded:
    """One clip's transcript: its text, its words with their CTC frames, and per frame the
    log-probability of the most likely token (for segment confidences)."""

    text: str
    words: list[Word]
    frame_logprob: np.ndarray


class LoadedModel:
    """One model instance shared by all requests, in the configured runtime (torch or ONNX
    Runtime) and precision, decoded greedily or with the configured n-gram beam search. Its
    inference workers call `transcribe` at once (forward passes and decoding keep no state
    between calls); attribution has its own copy in another process."""

    def __init__(self, name: str, path: Path, settings: Settings):
        from transformers import Wav2Vec2Config, Wav2Vec2Processor

        from speechfm.core.ctc import BeamDecoder, frame_seconds

        self.name = name
        self.path = path
        self.runtime, self.dtype = settings.runtime, settings.dtype
        self.processor = Wav2Vec2Processor.from_pretrained(str(path), local_files_only=True)
        self.frame_seconds = frame_seconds(Wav2Vec2Config.from_pretrained(str(path)))
        self.beam = (BeamDecoder(self.processor, settings.lm, settings.alpha, settings.beta,
                                 settings.beam_width) if settings.lm else None)
        if self.runtime == "onnx":
            from speechfm.core.onnx import OnnxCtc

            self.onnx = OnnxCtc(path, self.dtype, threads=intra_op_threads(settings))
        else:
            from speechfm.core.ctc import load_ctc_model, quantize_int8

            self.model, _ = load_ctc_model(path, safetensors_only=True)
            if self.dtype == "int8":  # dynamic int8 Linear layers: faster on CPUs without bf16
                self.model = quantize_int8(self.model)
        log.info("loaded model '%s' from %s (%s, %s, %s decoding)", name, path, self.runtime,
                 self.dtype, "beam + LM" if self.beam else "greedy")

    def logits(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Float32 CTC logits [frames, vocab] of a batch of 16 kHz clips, each exactly as if it
        ran alone (`speechfm.core.ctc.ctc_logits`; the ONNX graphs batch the same way)."""
        extractor = self.processor.feature_extractor
        if self.runtime == "onnx":
            return self.onnx.logits(extractor, audios)
        import torch

        from speechfm.core.ctc import ctc_logits

        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"):
            return [lg.float().numpy() for lg in ctc_logits(self.model, extractor, audios)]

    def transcribe(self, audios: list[np.ndarray]) -> list[Decoded]:
        """Transcripts and word frames of a batch of 16 kHz clips (no clip's result depends on
        its batch)."""
        from speechfm.core.ctc import greedy_text, greedy_words

        tokenizer = self.processor.tokenizer
        out = []
        for logits in self.logits(audios):
            shifted = logits - logits.max(axis=-1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
            best = log_probs.max(axis=-1)
            if self.beam is None:
                ids = logits.argmax(axis=-1)
                out.append(Decoded(greedy_text(tokenizer, ids), greedy_words(tokenizer, ids), best))
            else:
                words = self.beam.words(log_probs)
                out.append(Decoded(" ".join(w.text for w in words), words, best))
        return out
