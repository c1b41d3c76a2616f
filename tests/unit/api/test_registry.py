"""A loaded model (`speechfm_api.registry.LoadedModel`) in its precisions, without a service."""

from __future__ import annotations

import numpy as np


def test_int8_model_transcribes_close_to_float(tiny_ctc_model_dir) -> None:
    """`--dtype int8` (dynamic quantization) keeps nearly every frame's prediction."""
    import torch

    from speechfm_api.registry import LoadedModel
    from speechfm_api.settings import Settings

    rng = np.random.default_rng(1)
    clips = [0.3 * rng.standard_normal(n).astype(np.float32) for n in (16000, 24000)]
    plain = LoadedModel("tiny", tiny_ctc_model_dir, Settings())
    quantized = LoadedModel("tiny", tiny_ctc_model_dir, Settings(dtype="int8"))
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear)
               for m in quantized.model.modules())
    assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear)
                   for m in plain.model.modules())
    decoded = quantized.transcribe(clips)
    assert len(decoded) == 2 and all(d.text for d in decoded)
    with torch.inference_mode():
        x = plain.processor.feature_extractor(clips[0], sampling_rate=16000,
                                              return_tensors="pt").input_values
        agree = (plain.model(x).logits.argmax(-1) == quantized.model(x).logits.argmax(-1))
    assert agree.float().mean() > 0.9
