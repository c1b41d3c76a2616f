"""Stage 2: wav2vec 2.0 pre-training with fairseq from the tar-shard manifests of `prepare`."""

from speechfm.pretrain.config import PRESETS, build_config, load_preset

__all__ = ["PRESETS", "build_config", "load_preset"]
