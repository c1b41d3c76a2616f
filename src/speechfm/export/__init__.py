"""`speechfm export`: fairseq wav2vec 2.0 checkpoints -> transformers model folders."""

from speechfm.export.convert import export_checkpoint

__all__ = ["export_checkpoint"]
