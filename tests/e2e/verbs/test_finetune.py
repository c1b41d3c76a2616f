"""`speechfm finetune` end to end on the tiny preset with the small demo corpus: the transformers
backend (resumed, on two torchrun processes, from a fairseq pre-training checkpoint), the fairseq
backend, and fairseq CTC fine-tuning from a real tiny pre-training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechfm.core.errors import SpeechfmError
from speechfm.core.presets import load_pretrain
from speechfm.engine.fairseq import FairseqJob, start, write_job
from speechfm.engine.fairseq.userdir import INDEXED_TASKS
from speechfm.finetune.fairseq_ctc import build_config, train
from speechfm.pretrain import build_config as pretrain_config
from tests.helpers import run_speechfm
from tests.helpers.letters import write_labeled
from tests.helpers.shard_manifest import make_shard_manifest
from tests.helpers.tracking import _mlflow_runs

FAST = ["--set", "num_train_epochs=2", "--set", "per_device_train_batch_size=4",
        "--set", "logging_steps=1"]


@pytest.mark.slow
def test_transformers_backend_trains_saves_resumes_and_tracks(small_demo: Path,
                                                              tmp_path: Path) -> None:
    import torch
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    db, out = tmp_path / "ml.db", tmp_path / "ft"
    done = run_speechfm("finetune", "--labeled", small_demo / "labeled", "--out", out,
                        "--preset", "tiny", "--tracking-uri", f"sqlite:///{db}", *FAST)
    assert done.returncode == 0, done.stderr[-3000:]
    model_dir = out / "model"
    assert done.stdout.strip().endswith(str(model_dir))
    # plain transformers loads the artifact and transcribes
    model = Wav2Vec2ForCTC.from_pretrained(str(model_dir)).eval()
    processor = Wav2Vec2Processor.from_pretrained(str(model_dir))
    import soundfile as sf

    wav, rate = sf.read(min((small_demo / "labeled" / "test").glob("*.flac")),
                        dtype="float32")
    inputs = processor(wav, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        logits = model(inputs.input_values).logits
    assert logits.shape[-1] == len(processor.tokenizer) == 32
    assert torch.isfinite(logits).all()
    state = json.loads(max((out / "checkpoints").glob("checkpoint-*/trainer_state.json"))
                       .read_text())
    evals = [h for h in state["log_history"] if "eval_wer" in h]
    assert len(evals) == 2 and all(0 <= h["eval_cer"] for h in evals)
    # it learns: a model whose weights do not move keeps its first loss (~11 here); measured
    # 11.2 -> 5.6 (train) and 6.5 -> 4.9 (valid) in these 4 steps
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert losses[-1] < 0.7 * losses[0]
    assert evals[1]["eval_loss"] < 0.9 * evals[0]["eval_loss"]
    steps = state["global_step"]

    # MLflow: one run, params = the resolved preset, training and eval metrics from rank 0
    (run,) = _mlflow_runs(db, "finetune")
    assert run.data.params["preset.transformers.learning_rate"] == "0.003"
    assert {"loss", "eval/wer", "eval/cer", "learning_rate"} <= set(run.data.metrics)

    # resume: one more epoch continues from the last checkpoint instead of starting over
    more = run_speechfm("finetune", "--labeled", small_demo / "labeled", "--out", out,
                        "--preset", "tiny", "--tracking-uri", f"sqlite:///{db}",
                        *FAST[:-4], "--set", "num_train_epochs=3",
                        "--set", "per_device_train_batch_size=4")
    assert more.returncode == 0, more.stderr[-3000:]
    assert "resuming from" in more.stderr
    state = json.loads(max((out / "checkpoints").glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1])).read_text())
    assert state["global_step"] == steps * 3 // 2
    # the resumed epoch continues from the trained weights: its loss is below the first epoch's
    resumed = [h["loss"] for h in state["log_history"] if "loss" in h and h["step"] > steps]
    assert resumed and max(resumed) < losses[0] * 0.7


@pytest.mark.slow
def test_transformers_backend_with_two_torchrun_processes(small_demo: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "ft2"
    done = run_speechfm("finetune", "--labeled", small_demo / "labeled", "--out", out,
                        "--gpus", "2", "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}",
                        "--set", "num_train_epochs=1", "--set", "per_device_train_batch_size=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "launching 2 workers" in done.stderr
    state = json.loads(next((out / "checkpoints").glob("checkpoint-*/trainer_state.json"))
                       .read_text())
    # 8 utterances, 2 per process and step, 2 processes: 2 steps per epoch
    assert state["global_step"] == 2
    assert (out / "model" / "model.safetensors").exists()
    assert len(_mlflow_runs(tmp_path / "ml.db", "finetune")) == 1


@pytest.mark.slow
def test_fairseq_backend_ends_in_the_same_artifact(small_demo: Path, tmp_path: Path) -> None:
    import torch
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    db, out = tmp_path / "ml.db", tmp_path / "fs"
    done = run_speechfm("finetune", "--backend", "fairseq", "--labeled", small_demo / "labeled",
                        "--out", out, "--tracking-uri", f"sqlite:///{db}",
                        "--set", "optimization.max_update=8",
                        "--set", "checkpoint.save_interval_updates=4",
                        "--set", "dataset.validate_interval_updates=2")
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(out / "fairseq" / "checkpoint_best.pt", weights_only=False)
    assert state["cfg"]["criterion"]["zero_infinity"] is True
    assert state["cfg"]["checkpoint"]["best_checkpoint_metric"] == "wer"
    model = Wav2Vec2ForCTC.from_pretrained(str(out / "model")).eval()
    processor = Wav2Vec2Processor.from_pretrained(str(out / "model"))
    # the exported output layer is fairseq's dictionary: <s>(blank) <pad> </s> <unk> | letters
    assert model.config.vocab_size == len(processor.tokenizer) == 4 + 30
    assert processor.tokenizer.convert_ids_to_tokens(4) == "|"
    # the exported model is the fine-tuned checkpoint (its CTC head and last layer, exactly;
    # tests/test_export.py checks the whole conversion numerically)
    fs = state["model"]
    assert torch.equal(model.lm_head.weight, fs["w2v_encoder.proj.weight"])
    last = len(model.wav2vec2.encoder.layers) - 1
    assert torch.equal(model.wav2vec2.encoder.layers[last].feed_forward.output_dense.weight,
                       fs[f"w2v_encoder.w2v_model.encoder.layers.{last}.fc2.weight"])
    with torch.no_grad():
        assert torch.isfinite(model(torch.zeros(1, 16000)).logits).all()
    # and it learned: fairseq's validation loss fell from its first validation (after 2 updates)
    # to its last (after 8); 4 updates were too few for a margin that holds across random inits
    valid = [json.loads(line.split("| valid | ", 1)[1])["valid_loss"]
             for line in (out / "fairseq" / "train.log").read_text().splitlines()
             if "| valid | " in line]
    assert len(valid) == 4 and float(valid[-1]) < 0.95 * float(valid[0]), valid
    (run,) = _mlflow_runs(db, "finetune")
    assert run.data.params["backend"] == "fairseq"


@pytest.mark.slow
def test_transformers_backend_from_a_fairseq_pretraining_checkpoint(small_demo: Path,
                                                                    tmp_path: Path) -> None:
    """--init with a fairseq checkpoint: exported first, then fine-tuned with a frozen encoder."""
    import torch
    from transformers import Wav2Vec2ForCTC

    from tests.helpers.fairseq_checkpoints import TINY, _pretrained, _save

    fs_model, cfg = _pretrained(TINY)
    ckpt = _save(tmp_path / "checkpoint_best.pt", cfg, fs_model)
    out = tmp_path / "ft"
    done = run_speechfm("finetune", "--labeled", small_demo / "labeled", "--out", out,
                        "--init", ckpt, "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}",
                        "--set", "num_train_epochs=1", "--set", "freeze_feature_encoder=true")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "init" / "config.json").exists()
    model = Wav2Vec2ForCTC.from_pretrained(str(out / "model"))
    conv0 = model.wav2vec2.feature_extractor.conv_layers[0].conv.weight
    assert torch.equal(conv0, fs_model.feature_extractor.conv_layers[0][0].weight)  # frozen
    layer = model.wav2vec2.encoder.layers[0].attention.q_proj.weight
    assert not torch.equal(layer, fs_model.encoder.layers[0].self_attn.q_proj.weight)  # trained
    assert model.config.hidden_size == TINY["encoder_embed_dim"]


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
