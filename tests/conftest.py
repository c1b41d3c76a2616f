"""Shared fixtures (a small demo archive, a tiny CTC model, a real Slurm), one per test session;
plain helpers live in tests/helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechfm.synth import synthesize
from tests.helpers import FINNISH_VOCAB, SMALL_DEMO


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-channel, 2-day demo (8 files of 25 s) and a 16-utterance labeled corpus."""
    out = tmp_path_factory.mktemp("demo")
    synthesize(out, SMALL_DEMO, workers=2)
    return out


@pytest.fixture(scope="session")
def tiny_ctc_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer wav2vec2 CTC model with its processor, saved as transformers
    would save a fine-tuned one (for tests of stages that consume a model; it transcribes noise)."""
    import json

    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    out = tmp_path_factory.mktemp("tiny_ctc")
    vocab = out / "vocab.json"
    vocab.write_text(json.dumps({c: i for i, c in enumerate(FINNISH_VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(vocab), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|", bos_token=None, eos_token=None)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=len(FINNISH_VOCAB), hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, conv_dim=(32, 32, 32, 32, 32, 32, 32),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, pad_token_id=0,
        ctc_loss_reduction="mean",
    )
    Wav2Vec2ForCTC(config).save_pretrained(out)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A real single-node Slurm (munged + slurmctld + slurmd) for the session; stopped by PID.

    Client commands must run with `slurm_cluster.env` (it sets $SLURM_CONF)."""
    from tests.helpers.slurm import SlurmCluster

    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    try:
        yield cluster
    finally:
        cluster.stop()
