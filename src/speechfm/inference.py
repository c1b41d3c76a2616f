"""Batched CTC inference that gives every clip exactly the logits it gets alone.

A padded batch through `Wav2Vec2ForCTC` is not the same as one clip at a time: the feature
encoder's group norm (Base and the `tiny` preset) takes its statistics over the padding too, and
each clip's audio normalisation must cover that clip only. Here each clip is normalised and runs
through the convolutional feature encoder alone (convolutions gain nothing from batching on a CPU
and waste work on padding), and only the frame sequences are padded: the projection is per frame,
the encoder zeroes and masks padded frames (its positional convolution then sees the same zeros as
its own edge padding), and the head is per frame. So the transcript of a clip never depends on
which other requests shared its batch, and `speechfm evaluate` and `speechfm serve` agree.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from speechfm.constants import SAMPLE_RATE


@torch.inference_mode()
def ctc_logits(model, feature_extractor, audios: list[np.ndarray]) -> list[torch.Tensor]:
    """Logits [frames_i, vocab] of each 16 kHz clip of `audios` from one padded encoder pass."""
    w2v = model.wav2vec2
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    feats = []
    for audio in audios:
        values = feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_values
        feats.append(w2v.feature_extractor(values.to(dtype)).transpose(1, 2)[0])  # [T_i, C]
    lengths = torch.tensor([f.shape[0] for f in feats])
    hidden, _ = w2v.feature_projection(pad_sequence(feats, batch_first=True))
    mask = None
    if int(lengths.min()) < hidden.shape[1]:
        mask = torch.arange(hidden.shape[1])[None, :] < lengths[:, None]
    hidden = w2v.encoder(hidden, attention_mask=mask).last_hidden_state
    if w2v.adapter is not None:
        hidden = w2v.adapter(hidden)
    logits = model.lm_head(hidden)
    return [logits[i, : int(n)] for i, n in enumerate(lengths)]



def quantize_int8(model):
    """Dynamic int8 quantization of every `Linear` (inference only, for CPUs without bf16 units).

    The convolutional feature encoder stays float: quantizing its convolutions too (as unfold +
    `Linear`) was measured on the demo's fine-tuned `tiny` model to raise test CER from 6.0% to
    19.2% (per-tensor 8-bit activations lose the early layers' range), while the `Linear` layers
    alone cost nothing measurable (6.03% -> 6.05%)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice for eager quantization
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
