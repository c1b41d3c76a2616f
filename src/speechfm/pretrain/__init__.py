"""Stage: wav2vec 2.0 pre-training with fairseq from the tar-shard manifests of `prepare`."""

from speechfm.pretrain.config import build_config

__all__ = ["build_config"]
