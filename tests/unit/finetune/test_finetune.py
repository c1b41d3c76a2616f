"""`speechfm finetune --backend transformers` and `speechfm evaluate`, run for real on the tiny
preset with the small demo corpus."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tests.helpers import GOLDEN, run_speechfm

FAST = ["--set", "num_train_epochs=2", "--set", "per_device_train_batch_size=4",
        "--set", "logging_steps=1"]


def _mlflow_runs(db: Path, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{db}")
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


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


@pytest.mark.slow  # a whole verb end to end (see `make test-fast`)
def test_evaluate_writes_hypotheses_metrics_and_mlflow(small_demo: Path, tiny_ctc_model_dir: Path,
                                                       tmp_path: Path) -> None:
    db, out = tmp_path / "ml.db", tmp_path / "eval"
    test_tsv = small_demo / "labeled" / "test.tsv"
    done = run_speechfm("evaluate", "--model", tiny_ctc_model_dir, "--test", test_tsv,
                        "--test", f"dev={small_demo / 'labeled' / 'valid.tsv'}", "--out", out,
                        "--tracking-uri", f"sqlite:///{db}")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"test", "dev"}
    assert json.loads((out / "summary.json").read_text()) == {  # per set with several sets
        name: {"wer": round(m["wer"], 4), "cer": round(m["cer"], 4)} for name, m in metrics.items()}
    assert metrics["test"]["utterances"] == 4 and metrics["test"]["cer"] > 0.5  # random model
    with (out / "hyp_test.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 4
    total_chars = sum(int(r["chars"]) for r in rows)
    assert sum(int(r["char_errors"]) for r in rows) / total_chars == pytest.approx(
        metrics["test"]["cer"])
    assert rows[0]["reference"] == rows[0]["reference"].lower()
    (run,) = _mlflow_runs(db, "evaluate")
    assert run.data.metrics["test/cer"] == pytest.approx(metrics["test"]["cer"])

    bad = run_speechfm("evaluate", "--model", tmp_path, "--test", test_tsv, "--out", out,
                       "--tracking-uri", f"sqlite:///{db}")
    assert bad.returncode == 2 and "no config.json" in bad.stderr


@pytest.mark.slow
def test_fairseq_backend_ends_in_the_same_artifact(small_demo: Path, tmp_path: Path) -> None:
    import torch
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    db, out = tmp_path / "ml.db", tmp_path / "fs"
    done = run_speechfm("finetune", "--backend", "fairseq", "--labeled", small_demo / "labeled",
                        "--out", out, "--tracking-uri", f"sqlite:///{db}",
                        "--set", "optimization.max_update=4",
                        "--set", "checkpoint.save_interval_updates=2",
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
    # and it learned: fairseq's validation loss fell between its two validations (902 -> 771)
    valid = [json.loads(line.split("| valid | ", 1)[1])["valid_loss"]
             for line in (out / "fairseq" / "train.log").read_text().splitlines()
             if "| valid | " in line]
    assert len(valid) == 2 and float(valid[1]) < 0.95 * float(valid[0])
    (run,) = _mlflow_runs(db, "finetune")
    assert run.data.params["backend"] == "fairseq"


@pytest.mark.slow
def test_transformers_backend_from_a_fairseq_pretraining_checkpoint(small_demo: Path,
                                                                    tmp_path: Path) -> None:
    """--init with a fairseq checkpoint: exported first, then fine-tuned with a frozen encoder."""
    import torch
    from transformers import Wav2Vec2ForCTC

    from tests.unit.export.test_export import TINY, _pretrained, _save

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




def test_transformers_backend_on_lumi_renders_a_slurm_job_matching_golden_file() -> None:
    """`finetune --site lumi --gpus 16` (transformers) trains on two compute nodes, never on the
    login node: 16 srun tasks, each `speechfm.launch.rank` calling the recipe's `train_rank`
    with the same config."""
    from speechfm.cli import build_parser
    from speechfm.core.sites import load_site
    from speechfm.finetune.command import config_of
    from speechfm.finetune.recipe import RANK_ENTRY, transformers_ranks
    from speechfm.launch.slurm import render_sbatch
    from tests.helpers import assert_lumi_network

    argv = ["finetune", "--backend", "transformers", "--preset", "base", "--labeled",
            "/scratch/project_465000000/labeled", "--init",
            "/scratch/project_465000000/runs/pretrain/checkpoint_last.pt",
            "--out", "/scratch/project_465000000/runs/finetune", "--site", "lumi",
            "--gpus", "16", "--epochs", "80"]
    config = config_of(build_parser().parse_args(argv))
    job = transformers_ranks(config, cpu=False)
    script = render_sbatch(job, load_site("lumi"), Path("/scratch/project_465000000"))
    golden = GOLDEN / "finetune_transformers_lumi_16.sbatch"
    if os.environ.get("SPEECHFM_UPDATE_GOLDEN"):
        golden.write_text(script)
    assert script == golden.read_text()
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=8" in script
    assert ("python3 -m speechfm.launch.rank /scratch/project_465000000/runs/finetune/ranks.json"
            in script)
    assert job.entry == RANK_ENTRY and job.args["config"]["epochs"] == 80
    assert job.args["config"]["backend"] == "transformers" and job.world_size == 16
    assert "--signal" not in script and "requeue" not in script  # the Trainer cannot act on them
    assert_lumi_network(script)
