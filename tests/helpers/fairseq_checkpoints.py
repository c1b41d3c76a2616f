"""Test helpers: tiny fairseq wav2vec 2.0 pre-training models, built from fairseq's dataclass
config with every parameter randomised, and saved as fairseq saves a checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

TINY = {"conv_feature_layers": "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2",
            "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64,
            "encoder_attention_heads": 2, "conv_pos": 16, "conv_pos_groups": 4, "final_dim": 16,
            "latent_vars": 8, "latent_groups": 2, "quantize_targets": True}


def _pretrained(arch: dict):
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    model_cfg = Wav2Vec2Config(**arch)
    model = Wav2Vec2Model(model_cfg).eval()
    # init is near-zero for some weights; randomise every parameter so a wrong mapping shows
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    # saved as fairseq saves it: every field of the model's dataclass config
    model_dict = OmegaConf.to_container(OmegaConf.structured(model_cfg), enum_to_str=True)
    cfg = OmegaConf.create({"model": model_dict | {"_name": "wav2vec2"},
                            "task": {"_name": "audio_pretraining", "data": "/tmp",
                                     "normalize": arch.get("layer_norm_first", False)}})
    return model, cfg


def _save(path: Path, cfg, model, **extra) -> Path:
    torch.save({"cfg": cfg, "model": model.state_dict(), **extra}, path)
    return path
