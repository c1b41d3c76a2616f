"""The set-up installs every library the recipe needs, with the pinned CPU torch."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "module", ["fairseq", "transformers", "captum", "webrtcvad", "mlflow", "dvc", "silero_vad",
               "fastapi", "uvicorn", "submitit", "jiwer", "soundfile", "kenlm", "pyctcdecode"],
)
def test_library_imports(module: str) -> None:
    importlib.import_module(module)


def test_torch_is_the_pinned_cpu_build() -> None:
    import torch

    assert torch.__version__.startswith("2.13.0")
    assert "+cpu" in torch.__version__
    pins = (ROOT / "constraints.txt").read_text()
    assert "torch==2.13.0" in pins


def test_fairseq_extensions_and_wav2vec2_model_build() -> None:
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

    model = Wav2Vec2Model(Wav2Vec2Config(encoder_layers=1, encoder_embed_dim=32,
                                         encoder_ffn_embed_dim=64, encoder_attention_heads=2))
    assert sum(p.numel() for p in model.parameters()) > 0


def test_second_setup_run_is_fast() -> None:
    """A second `scripts/setup.sh` only checks stamps (the first ran before the tests)."""
    import time

    start = time.monotonic()
    subprocess.run(["bash", str(ROOT / "scripts/setup.sh")], check=True, cwd=ROOT,
                   capture_output=True)
    assert time.monotonic() - start < 30


def test_external_tools_present() -> None:
    import shutil

    for tool in ("ffmpeg", "ffprobe", "espeak-ng", "sox"):
        assert shutil.which(tool), tool
    assert sys.version_info >= (3, 11)


def test_tiny_ctc_model_loads_with_plain_transformers(tiny_ctc_model_dir) -> None:
    import numpy as np
    import torch
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    model = Wav2Vec2ForCTC.from_pretrained(tiny_ctc_model_dir).eval()
    processor = Wav2Vec2Processor.from_pretrained(tiny_ctc_model_dir)
    inputs = processor(np.zeros(16000, np.float32), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        logits = model(inputs.input_values).logits
    assert logits.shape[-1] == len(processor.tokenizer)
    assert isinstance(processor.batch_decode(logits.argmax(-1))[0], str)


def test_mlflow_run_reads_back(tmp_path) -> None:
    import mlflow

    from speechfm.tracking import start_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with start_run("unit", params={"a": {"b": 1}}, uri=uri) as run:
        mlflow.log_metric("loss", 0.5, step=1)
    got = mlflow.tracking.MlflowClient(uri).get_run(run.info.run_id)
    assert got.data.params == {"a.b": "1"}
    assert got.data.metrics["loss"] == 0.5
