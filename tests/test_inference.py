"""Batched CTC inference (`speechfm.core.ctc.ctc_logits`, used by `evaluate` and `serve`) gives
each clip the logits it gets alone, for group-norm (Base-like) and layer-norm (Large-like) models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechfm.core.ctc import ctc_logits


def small_model(feat_extract_norm: str, stable: bool):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=12, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, pad_token_id=0, feat_extract_norm=feat_extract_norm,
        do_stable_layer_norm=stable)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)
    return Wav2Vec2ForCTC(config).eval(), extractor


@pytest.mark.parametrize("norm,stable", [("group", False), ("layer", True)])
def test_batched_logits_equal_each_clip_alone(norm: str, stable: bool) -> None:
    model, extractor = small_model(norm, stable)
    rng = np.random.default_rng(0)
    clips = [(0.3 * rng.standard_normal(n) * np.sin(np.arange(n) / 700)).astype(np.float32)
             for n in (16000, 9000, 23456)]
    batched = ctc_logits(model, extractor, clips)
    with torch.inference_mode():
        alone = [model(extractor(c, sampling_rate=16000, return_tensors="pt").input_values)
                 .logits[0] for c in clips]
        inputs = extractor(clips, sampling_rate=16000, return_tensors="pt", padding=True)
        padded = model(inputs.input_values, attention_mask=inputs.attention_mask).logits
    for got, want in zip(batched, alone):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    if norm == "group":  # the plain padded batch: group norm sees the padding, short clips change
        short = alone[1].shape[0]
        assert not torch.allclose(padded[1, :short], alone[1], rtol=1e-4, atol=1e-4)

