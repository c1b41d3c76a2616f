"""The set-up installs every library the recipe needs, with the pinned torch: the CPU build on a
workstation and in CI, the ROCm or CUDA build inside the training images (they set
SPEECHFM_TORCH_INDEX and SPEECHFM_SYSTEM_PACKAGES, as `scripts/setup.sh` did when it built them;
each image's `%test` runs this file)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

TOOL_PACKAGES = {"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg", "espeak-ng": "espeak-ng", "sox": "sox"}


def system_packages() -> set[str]:
    """The Debian packages this installation was set up with (setup.sh's list or the image's)."""
    if os.environ.get("SPEECHFM_SYSTEM_PACKAGES"):
        return set(os.environ["SPEECHFM_SYSTEM_PACKAGES"].split())
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    default = re.search(r'SPEECHFM_SYSTEM_PACKAGES:-([^}]*)\}', setup)
    assert default, "setup.sh no longer names its default system packages"
    return set(default.group(1).split())


@pytest.mark.parametrize(
    "module", ["fairseq", "transformers", "captum", "webrtcvad", "mlflow", "dvc", "silero_vad",
               "fastapi", "uvicorn", "submitit", "jiwer", "soundfile", "kenlm", "pyctcdecode"],
)
def test_library_imports(module: str) -> None:
    importlib.import_module(module)


def test_torch_is_the_pinned_build() -> None:
    """torch 2.13.0, and the build the set-up asked for: CPU unless an extra index (ROCm, CUDA)."""
    import torch

    assert torch.__version__.startswith("2.13.0")
    index = os.environ.get("SPEECHFM_TORCH_INDEX", "")
    if "rocm" in index:
        assert torch.version.hip is not None, torch.__version__
    elif "/cu" in index:
        assert torch.version.cuda is not None, torch.__version__
    else:
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
    """Every tool whose Debian package the set-up installed is on PATH."""
    import shutil

    packages = system_packages()
    for tool, package in TOOL_PACKAGES.items():
        if package in packages:
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
    assert logits.shape == (1, 49, len(processor.tokenizer))  # 1 s of audio: 49 frames of 20 ms
    assert torch.isfinite(logits).all()


def test_mlflow_run_reads_back(tmp_path) -> None:
    import mlflow

    from speechfm.core.tracking import start_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with start_run("unit", params={"a": {"b": 1}}, uri=uri) as run:
        run.log_metrics({"loss": 0.5}, step=1)
    got = mlflow.tracking.MlflowClient(uri).get_run(run.run_id)
    assert got.data.params == {"a.b": "1"}
    assert got.data.metrics["loss"] == 0.5


def test_tracking_none_records_nothing(tmp_path, monkeypatch) -> None:
    """`--tracking-uri none`: no run, no store file, not even the default ./mlflow.db."""
    from speechfm.core.tracking import start_run

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with start_run("unit", params={"a": 1}, uri="none") as run:
        run.log_metrics({"loss": 0.5})
        run.log_artifact(__file__)
    assert run.run_id is None and not run
    assert list(tmp_path.iterdir()) == []
