"""Shared fixtures: a small demo archive generated once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from speechfm.synth import SynthConfig, synthesize

SMALL_DEMO = SynthConfig(
    seed=3, channels=4, start="2021-01-31", days=2, hours_per_day=1, hour_seconds=25.0,
    labeled={"train": 8, "valid": 4, "test": 4},
)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-channel, 2-day demo (8 files of 25 s) and a 16-utterance labeled corpus."""
    out = tmp_path_factory.mktemp("demo")
    synthesize(out, SMALL_DEMO, workers=2)
    return out


ROOT = Path(__file__).resolve().parents[1]


def run_speechfm(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI of this checkout (not whatever is installed) as a user would."""
    env = {**os.environ, **kwargs.pop("env", {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "speechfm", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, **kwargs, check=False)


def require(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed: run 'make setup'"
    return path


def assert_lumi_network(script: str) -> None:
    """RCCL can reach Slingshot: host libfabric + CXI bound in, the aws-ofi-rccl plugin on the
    container's library path, every rank checks it first, one failed rank ends the step."""
    step = next(line for line in script.splitlines() if "-m speechfm.launch." in line)
    for bind in ("/var/spool/slurmd", "/opt/cray", "/usr/lib64/libcxi.so.1",
                 "/usr/lib64/libjansson.so.4"):
        assert f" -B {bind} " in step, bind
    assert ":/opt/aws-ofi-rccl " in step  # the plugin built with LUMI's EasyBuild recipe
    assert "--env LD_LIBRARY_PATH=/opt/aws-ofi-rccl/lib:/opt/cray/libfabric/" in step
    assert step.startswith("srun --kill-on-bad-exit=1 ")
    assert 'export SPEECHFM_REQUIRE_NET_PLUGIN="1"' in script
    assert 'export NCCL_SOCKET_IFNAME="hsn0,hsn1,hsn2,hsn3"' in script


FINNISH_VOCAB = ["<pad>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyzåäö"]


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
    from tests.slurm import SlurmCluster

    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    try:
        yield cluster
    finally:
        cluster.stop()
