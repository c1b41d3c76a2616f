"""`speechfm export`: fairseq wav2vec 2.0 checkpoints -> transformers model folders, and CTC
folders -> ONNX graphs (`speechfm.core.onnx`) for the ONNX Runtime backend of the service."""

from speechfm.core.checkpoint import export_checkpoint
from speechfm.core.onnx import export_onnx

__all__ = ["export_checkpoint", "export_onnx"]
