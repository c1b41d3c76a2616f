"""fairseq CTC fine-tuning through the shared launch layer, from a real tiny pre-training."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from speechfm.core.errors import SpeechfmError
from speechfm.core.labeled import read_table
from speechfm.core.presets import load_pretrain
from speechfm.engine.fairseq import FairseqJob, ranks_of, start, write_job
from speechfm.engine.fairseq.userdir import INDEXED_TASKS
from speechfm.finetune.fairseq_ctc import build_config, train
from speechfm.pretrain import build_config as pretrain_config
from tests.helpers import assert_lumi_network
from tests.helpers.shard_manifest import make_shard_manifest

TINY_CTC = {
    "common": {"log_format": "json", "log_interval": 2, "seed": 1},
    "checkpoint": {"save_interval": 1000, "save_interval_updates": 3},
    "dataset": {"max_tokens": 200000, "num_workers": 0, "validate_interval": 1000,
                "validate_interval_updates": 3, "skip_invalid_size_inputs_valid_test": True},
    "optimization": {"max_update": 6, "lr": [5e-4], "sentence_avg": True},
    "optimizer": {"_name": "adam", "adam_betas": "(0.9,0.98)", "adam_eps": 1e-8},
    "lr_scheduler": {"_name": "tri_stage", "phase_ratio": [0.1, 0.4, 0.5], "final_lr_scale": 0.05},
    # masks that a 64-wide model can draw: 0.5 * 64 channels / 8 >= 1 span
    "model": {"mask_prob": 0.5, "mask_channel_prob": 0.5, "mask_channel_length": 8,
              "layerdrop": 0.0, "feature_grad_mult": 0.0},
}


FINETUNING_TASK = INDEXED_TASKS[1]


def _letters(text: str) -> list[str]:
    words = re.sub(r"[^a-zåäö ]", "", text.lower()).split()
    return [c for w in words for c in [*w, "|"]]


def write_labeled(demo: Path, out: Path) -> Path:
    """fairseq letter-target data for the demo's labeled train/valid splits."""
    out.mkdir(parents=True)
    counts: Counter[str] = Counter()
    for split in ("train", "valid"):
        rows = read_table(demo / "labeled" / f"{split}.tsv")
        lines = [str(demo / "labeled")]
        letters = []
        for path, text in rows:
            lines.append(f"{path.relative_to((demo / 'labeled').resolve())}\t{sf.info(path).frames}")
            letters.append(_letters(text))
            counts.update(letters[-1])
        (out / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        (out / f"{split}.ltr").write_text("\n".join(" ".join(x) for x in letters) + "\n")
        (out / f"{split}.wrd").write_text(
            "\n".join("".join(x).replace("|", " ").strip() for x in letters) + "\n")
    (out / "dict.ltr.txt").write_text("".join(f"{c} {n}\n" for c, n in counts.most_common()))
    return out


@pytest.mark.slow
def test_ctc_fine_tuning_from_a_tiny_pretraining(small_demo: Path, tmp_path: Path) -> None:
    """Both through the segment index (the tasks of the base/large/xlarge presets): tar-member
    entries for pre-training, plain files for the labeled data."""
    import mlflow
    import torch

    from speechfm.core.tracking import start_run

    manifest = make_shard_manifest(small_demo, tmp_path / "shards")
    pre = FairseqJob(save_dir=tmp_path / "pre", tracking_uri=f"sqlite:///{tmp_path / 'ml.db'}")
    write_job(pre, pretrain_config(load_pretrain("tiny"), manifest, pre.save_dir, 1, True,
                                   overrides=["optimization.max_update=2",
                                              "task._name=speechfm_audio_pretraining"]))
    assert start(pre).status == 0
    assert "IndexedAudioPretrainingTask" in (pre.save_dir / "train.log").read_text()
    data = write_labeled(small_demo, tmp_path / "labeled")
    with pytest.raises(SpeechfmError, match="no such pre-trained checkpoint"):
        build_config(data, tmp_path / "ctc", TINY_CTC, tmp_path / "nope.pt")

    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    with start_run("finetune-test", "ctc", uri=uri) as run:  # as the finetune verb opens it
        best = train(data, tmp_path / "ctc", TINY_CTC | {"task": {"_name": FINETUNING_TASK}},
                     init=pre.save_dir / "checkpoint_last.pt", cpu=True, tracking_uri=uri,
                     mlflow_run_id=run.run_id)
    assert (data / "train.idx").is_dir() and (data / "valid.idx").is_dir()  # built at launch
    assert "IndexedAudioFinetuningTask" in (tmp_path / "ctc" / "train.log").read_text()
    logged = mlflow.MlflowClient(uri).get_run(run.run_id).data
    assert logged.params["model._name"] == "wav2vec_ctc" and "valid/wer" in logged.metrics
    assert "train_inner/loss" in logged.metrics
    assert best == (tmp_path / "ctc" / "checkpoint_best.pt").resolve() and best.exists()
    state = torch.load(tmp_path / "ctc" / "checkpoint_last.pt", weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == 6
    assert state["cfg"]["model"]["_name"] == "wav2vec_ctc"
    assert state["cfg"]["criterion"]["zero_infinity"] is True
    assert '"valid_wer"' in (tmp_path / "ctc" / "train.log").read_text()
    # the encoder starts from the pre-trained weights (the feature encoder stays frozen with
    # feature_grad_mult 0, so its weights are still exactly the pre-trained ones)
    pre_state = torch.load(pre.save_dir / "checkpoint_last.pt", weights_only=False)["model"]
    key = "feature_extractor.conv_layers.0.0.weight"
    assert torch.equal(state["model"][f"w2v_encoder.w2v_model.{key}"], pre_state[key])


def test_base_ctc_on_lumi_simulates_128_gpus_with_8_gcds(small_demo: Path, tmp_path: Path) -> None:
    """The full-scale recipe as `finetune --backend fairseq --preset base --gpus 8 --site
    lumi` builds it: reference hyper-parameters, update_freq 128 / 8, one node of 8 GCDs."""
    from speechfm.core.presets import load_finetune
    from speechfm.core.sites import load_site
    from speechfm.engine.fairseq.job import update_freq
    from speechfm.launch.slurm import render_sbatch

    preset = load_finetune("base")
    assert preset["simulate_gpus"] == 128
    data = write_labeled(small_demo, tmp_path / "labeled")
    pre = FairseqJob(save_dir=tmp_path / "pre")
    write_job(pre, pretrain_config(load_pretrain("tiny"), make_shard_manifest(
        small_demo, tmp_path / "shards"), pre.save_dir, 1, True,
        overrides=["optimization.max_update=1"]))
    assert start(pre).status == 0
    init = pre.save_dir / "checkpoint_last.pt"
    config = build_config(data, tmp_path / "ctc", preset["fairseq"], init, nproc=8, cpu=False,
                          update_freq=update_freq(8, preset["simulate_gpus"]))
    assert config["optimization"]["update_freq"] == [16]
    assert config["optimization"]["lr"] == [2e-5] and config["optimization"]["max_update"] == 16450
    assert config["distributed_training"]["distributed_world_size"] == 8
    assert config["model"]["w2v_path"] == str(init.resolve())
    assert config["checkpoint"]["best_checkpoint_metric"] == "wer"
    job = FairseqJob(save_dir=tmp_path / "ctc", world_size=8, cpu=False, experiment="finetune",
                     run_name="ctc", stage="finetune")
    script = render_sbatch(ranks_of(job), load_site("lumi"), Path("/scratch/project_465000000"))
    assert "#SBATCH --nodes=1" in script and "#SBATCH --gpus-per-node=8" in script
    assert 'MIOPEN_FIND_MODE="2"' in script and "singularity exec --rocm" in script
    assert_lumi_network(script)
