"""Training FLOPs of a fairseq wav2vec 2.0 pre-training model, counted from its shapes (for MFU).

The convention of model FLOP utilisation: matrix multiplies and convolutions only, 2 FLOPs per
multiply-add, the backward twice the forward (input and weight gradients), except the first
convolution, whose input is the audio and needs no gradient. Nothing recomputed is counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from speechfm.core.constants import SAMPLE_RATE
from speechfm.engine.fairseq.fastpaths import conv_layers, feature_frames


@dataclass(frozen=True)
class TrainingFlops:
    """Forward + backward FLOPs of one batch, by part of the model."""

    feature_encoder: float
    transformer: float  # projections and feed-forward of the encoder layers
    attention: float  # the two T x T products of the encoder layers
    other: float  # feature projection, positional convolution, quantizer, output projections

    @property
    def total(self) -> float:
        return self.feature_encoder + self.transformer + self.attention + self.other


def expected_masked_fraction(model_cfg: dict[str, Any], frames: int) -> float:
    """Share of frames the time mask covers (spans of mask_length at mask_prob * T / length
    random starts, overlaps merged): 1 - (1 - length / T) ** starts, at least two spans."""
    length, prob = model_cfg["mask_length"], model_cfg["mask_prob"]
    if prob <= 0 or frames <= length:
        return 0.0 if prob <= 0 else 1.0
    starts = max(2.0, prob * frames / length)
    return 1.0 - (1.0 - length / frames) ** starts


def training_flops(model_cfg: dict[str, Any], batch: int, samples: int) -> TrainingFlops:
    """FLOPs of one forward + backward of `batch` crops of `samples` samples (see module doc)."""
    convs = conv_layers(model_cfg)
    conv_macs, first_macs, length, channels = 0, 0, samples, 1
    for i, (dim, kernel, stride) in enumerate(convs):
        length = (length - kernel) // stride + 1
        macs = length * dim * channels * kernel
        if i == 0:
            first_macs = macs
        conv_macs += macs
        channels = dim
    frames = feature_frames(model_cfg, samples)
    width, ffn = model_cfg["encoder_embed_dim"], model_cfg["encoder_ffn_embed_dim"]
    layers = model_cfg["encoder_layers"]
    dense = layers * frames * (4 * width * width + 2 * width * ffn)
    attention = layers * 2 * frames * frames * width
    kernel = model_cfg["conv_pos"]
    other = (frames + (1 - kernel % 2)) * width * (width // model_cfg["conv_pos_groups"]) * kernel
    if channels != width:
        other += frames * channels * width  # post_extract_proj
    final = model_cfg["final_dim"] or width
    masked = round(frames * expected_masked_fraction(model_cfg, frames))
    other += masked * width * final  # final_proj of the masked frames
    if model_cfg.get("quantize_targets"):
        vq = model_cfg["latent_dim"] or final
        other += masked * channels * model_cfg["latent_groups"] * model_cfg["latent_vars"]
        other += masked * vq * final  # project_q
    else:
        other += masked * channels * final
    scale = 2 * 3 * batch  # 2 FLOPs per MAC; forward + backward (2x)
    return TrainingFlops(
        feature_encoder=scale * conv_macs - 2 * batch * first_macs,  # no input gradient of layer 1
        transformer=scale * dense, attention=scale * attention, other=scale * other)


def flops_per_audio_second(model_cfg: dict[str, Any], crop_seconds: float) -> float:
    """Training FLOPs per second of audio for crops of `crop_seconds` (attention grows with it)."""
    samples = round(crop_seconds * SAMPLE_RATE)
    return training_flops(model_cfg, 1, samples).total / (samples / SAMPLE_RATE)


def describe(model_cfg: dict[str, Any], crop_seconds: float) -> str:
    """One line: TFLOP per audio second and the shares of the model's parts."""
    samples = round(crop_seconds * SAMPLE_RATE)
    f = training_flops(model_cfg, 1, samples)
    seconds = samples / SAMPLE_RATE
    parts = ", ".join(f"{name} {100 * value / f.total:.0f}%" for name, value in (
        ("feature encoder", f.feature_encoder), ("layers", f.transformer),
        ("attention", f.attention), ("other", f.other)))
    return (f"{f.total / seconds / 1e12:.4f} TFLOP per audio second at {crop_seconds:g} s crops "
            f"({parts}); {math.ceil(f.total / 1e9)} GFLOP per crop")
