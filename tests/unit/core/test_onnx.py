"""ONNX Runtime graphs of a CTC folder (`speechfm export --onnx`, `speechfm.core.onnx`): batched
ORT logits equal torch's per-clip logits, the int8 graph keeps the predictions, a stale export is
refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_speechfm


@pytest.fixture(scope="module")
def onnx_model_dir(tiny_ctc_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("onnx") / "tiny"
    shutil.copytree(tiny_ctc_model_dir, folder)
    done = run_speechfm("export", folder, "--onnx")
    assert done.returncode == 0, done.stderr
    return folder


def _clips() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [(0.3 * rng.standard_normal(n) * np.sin(np.arange(n) / 500)).astype(np.float32)
            for n in (16000, 7000, 31234, 12000)]


def test_export_writes_the_graphs_beside_the_weights(onnx_model_dir: Path) -> None:
    import json

    from speechfm.core.onnx import is_current

    names = {p.name for p in onnx_model_dir.iterdir()}
    assert {"features.onnx", "model.onnx", "model.int8.onnx", "onnx.json"} <= names
    assert not [n for n in names if n.endswith((".tmp", ".part"))]
    manifest = json.loads((onnx_model_dir / "onnx.json").read_text())
    assert manifest["opset"] == 17 and manifest["torch_max_abs_diff"] < 1e-4
    assert is_current(onnx_model_dir)


def test_float32_logits_match_torch_per_clip_in_any_batch(onnx_model_dir: Path) -> None:
    from speechfm.core.ctc import ctc_logits, load_ctc_model
    from speechfm.core.onnx import OnnxCtc

    model, processor = load_ctc_model(onnx_model_dir)
    extractor = processor.feature_extractor
    clips = _clips()
    ort = OnnxCtc(onnx_model_dir, "float32", threads=2)
    alone = [ctc_logits(model, extractor, [c])[0].numpy() for c in clips]
    for batch in (clips, clips[::-1][:3], clips[1:2]):
        got = ort.logits(extractor, batch)
        want = [alone[next(i for i, c in enumerate(clips) if c is clip)] for clip in batch]
        for g, w in zip(got, want):
            assert g.shape == w.shape
            assert np.abs(g - w).max() < 1e-4


def test_layer_norm_feature_encoder_exports_exactly(tmp_path: Path) -> None:
    """The Large/X-Large layout (a LayerNorm in every conv layer, conv biases): ORT float32
    logits equal torch's too."""
    import json

    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    from speechfm.core.ctc import ctc_logits, load_ctc_model
    from speechfm.core.onnx import OnnxCtc, export_onnx
    from speechfm.core.text import make_processor

    folder = tmp_path / "large-like"
    torch.manual_seed(1)
    Wav2Vec2ForCTC(Wav2Vec2Config(
        vocab_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, conv_dim=(16, 16, 16), conv_kernel=(10, 3, 2),
        conv_stride=(5, 2, 2), feat_extract_norm="layer", conv_bias=True,
        do_stable_layer_norm=True, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4)).save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(
        {c: i for i, c in enumerate(["<pad>", "<unk>", "|", "a", "b", "c", "d", "e"])}))
    make_processor(folder / "vocab.json").save_pretrained(folder)
    export_onnx(folder, int8=False)
    model, processor = load_ctc_model(folder)
    clips = _clips()
    got = OnnxCtc(folder, "float32", check=False).logits(processor.feature_extractor, clips)
    for g, clip in zip(got, clips):
        want = ctc_logits(model, processor.feature_extractor, [clip])[0].numpy()
        assert g.shape == want.shape and np.abs(g - want).max() < 1e-4


def test_int8_graph_keeps_the_predictions(onnx_model_dir: Path) -> None:
    from speechfm.core.ctc import load_ctc_model
    from speechfm.core.onnx import OnnxCtc

    _, processor = load_ctc_model(onnx_model_dir)
    clips = _clips()
    fp = OnnxCtc(onnx_model_dir, "float32").logits(processor.feature_extractor, clips)
    q = OnnxCtc(onnx_model_dir, "int8").logits(processor.feature_extractor, clips)
    agree = np.concatenate([a.argmax(-1) == b.argmax(-1) for a, b in zip(fp, q)])
    assert agree.mean() > 0.9
    assert max(np.abs(a - b).max() for a, b in zip(fp, q)) > 0  # really another graph


def test_stale_or_missing_export_is_refused(onnx_model_dir: Path, tmp_path: Path) -> None:
    from speechfm.core.errors import SpeechfmError
    from speechfm.core.onnx import OnnxCtc, is_current

    stale = tmp_path / "stale"
    shutil.copytree(onnx_model_dir, stale)
    with (stale / "model.safetensors").open("r+b") as f:  # other weights, same size
        f.seek(-4, 2)
        f.write(b"\x00\x00\x80\x3f")
    assert not is_current(stale)
    with pytest.raises(SpeechfmError, match="exported from other weights"):
        OnnxCtc(stale)
    (stale / "model.int8.onnx").unlink()
    with pytest.raises(SpeechfmError, match="model.int8.onnx missing"):
        OnnxCtc(stale, "int8", check=False)
    bad = run_speechfm("export", tmp_path, "--onnx")
    assert bad.returncode == 2 and "no config.json" in bad.stderr
