"""Holds only the fairseq user dir `speechfm_fairseq` (fairseq puts this folder on sys.path)."""
