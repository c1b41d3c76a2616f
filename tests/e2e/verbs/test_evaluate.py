"""`speechfm evaluate` end to end (after `speechfm lm` for its beam search): hypotheses, metrics
and the MLflow run from a tiny CTC model on the small demo's labeled sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import run_speechfm
from tests.helpers.tracking import _mlflow_runs


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


@pytest.mark.slow  # a whole verb end to end (see `make test-fast`)
def test_lm_and_evaluate_with_beam_search_from_the_cli(small_demo: Path, tiny_ctc_model_dir: Path,
                                                      tmp_path: Path) -> None:
    labeled = small_demo / "labeled"
    arpa = tmp_path / "lm" / "train.arpa"
    built = run_speechfm("lm", "--text", labeled / "train.tsv", "--out", arpa, "--order", "3")
    assert built.returncode == 0, built.stderr[-3000:]
    assert arpa.read_text(encoding="utf-8").startswith("\n\\data\\\nngram 1=")
    out = tmp_path / "eval"
    done = run_speechfm("evaluate", "--model", tiny_ctc_model_dir, "--test", labeled / "test.tsv",
                        "--out", out, "--lm", arpa, "--beam-width", "8",
                        "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["utterances"] == 4
    missing = run_speechfm("evaluate", "--model", tiny_ctc_model_dir, "--test",
                           labeled / "test.tsv", "--out", out, "--lm", tmp_path / "none.arpa",
                           "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}")
    assert missing.returncode == 2 and "none.arpa" in missing.stderr
    assert "language model not found" in missing.stderr
