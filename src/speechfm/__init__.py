"""speechfm: from a raw broadcast archive to monolingual wav2vec 2.0 speech foundation models."""

__version__ = "0.1.0"
