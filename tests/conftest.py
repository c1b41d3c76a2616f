"""Shared fixtures (a small demo archive and what prepare, pre-training and LUR tests make of it,
the dedup tests' demo prepared, a tiny CTC model, a real Slurm), one per test session; plain
helpers live in tests/helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechfm.synth import synthesize
from tests.helpers import DEDUP_DEMO, FINNISH_VOCAB, SMALL_DEMO, run_speechfm
from tests.helpers.prepared import prepare_cli
from tests.helpers.shard_manifest import make_shard_manifest


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-channel, 2-day demo (8 files of 25 s) and a 16-utterance labeled corpus."""
    out = tmp_path_factory.mktemp("demo")
    synthesize(out, SMALL_DEMO, workers=2)
    return out


@pytest.fixture(scope="session")
def prepared(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small demo's archive through `speechfm prepare --workers 2` (its 8 units built)."""
    out = tmp_path_factory.mktemp("prepared")
    summary = prepare_cli(small_demo / "archive", out, "--workers", "2")
    assert summary["units"] == 8 and summary["built"] == 8 and summary["segments"] > 0
    return out


@pytest.fixture(scope="session")
def manifest(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pre-training manifests over a tar shard of the small demo's labeled FLACs (3 copies)."""
    return make_shard_manifest(small_demo, tmp_path_factory.mktemp("shards"), copies=3)


@pytest.fixture(scope="session")
def test_tsv(small_demo: Path, tmp_path_factory) -> Path:
    """Three demo test utterances cut to 1.5 s (short keeps the LUR reference affordable)."""
    import soundfile as sf

    from speechfm.core.labeled import read_table

    out = tmp_path_factory.mktemp("lurdata")
    rows = read_table(small_demo / "labeled" / "test.tsv")[:3]
    lines = ["path\tseconds\tvoice\ttext"]
    for i, (path, text) in enumerate(rows):
        audio, rate = sf.read(path, dtype="float32")
        sf.write(out / f"u{i}.flac", audio[: int(1.5 * rate)], rate)
        lines.append(f"u{i}.flac\t1.5\tdemo\t{text}")
    (out / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "test.tsv"


@pytest.fixture(scope="session")
def dedup_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dedup tests' archive (`DEDUP_DEMO`: repeats and near-misses with ground truth)."""
    out = tmp_path_factory.mktemp("dedup_demo")
    synthesize(out, DEDUP_DEMO, workers=2)
    return out / "archive"


@pytest.fixture(scope="session")
def dedup_prepared(dedup_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`dedup_demo` through `speechfm prepare --workers 2` (with fingerprints)."""
    out = tmp_path_factory.mktemp("dedup_prepared")
    proc = run_speechfm("prepare", dedup_demo, "--out", out, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
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
