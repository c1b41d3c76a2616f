"""`speechfm export`: fairseq wav2vec 2.0 checkpoints -> transformers model folders."""

from speechfm.core.checkpoint import export_checkpoint

__all__ = ["export_checkpoint"]
