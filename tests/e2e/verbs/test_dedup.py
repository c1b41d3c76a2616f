"""`speechfm dedup` end to end on the dedup demo: the precision/recall targets against its ground
truth, the deduplicated manifests and their segment indexes, the report and the MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechfm.core import segment_index
from speechfm.core.constants import SAMPLE_RATE
from tests.helpers import run_speechfm
from tests.helpers.files import lines


@pytest.mark.slow  # a whole verb end to end (see `make test-fast`)
def test_targets_on_the_demo_with_manifests_report_and_mlflow(dedup_prepared: Path,
                                                              dedup_demo: Path,
                                                              tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    out = tmp_path / "dedup"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_speechfm("dedup", dedup_prepared, "--out", out, "--archive", dedup_demo,
                        "--tracking-uri", uri)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    truth = report["truth"]
    assert set(truth["pairs_by_kind"]) == {"advert", "ident", "programme"}
    assert truth["true_pairs"] >= 15 and truth["near_miss_pairs"] >= 30
    assert truth["precision"] >= 0.95
    assert truth["recall"] >= 0.90
    assert truth["near_miss_rate"] <= 0.02
    assert json.loads((out / "summary.json").read_text()) == {  # the headline DVC metric
        "hours_removed": round(report["hours_removed"], 4),
        "precision": round(truth["precision"], 4), "recall": round(truth["recall"], 4)}
    # copies through another codec (MP2 vs AAC) or sample rate (44.1 vs 48 kHz) are found too
    assert truth["pairs_across_codec"] >= 3 and truth["recall_across_codec"] >= 0.9
    assert truth["pairs_across_rate"] >= 3 and truth["recall_across_rate"] >= 0.9
    # only training rows are dropped, exactly the removed ones; validation is copied unchanged
    before = lines(dedup_prepared / "manifests/train.tsv")
    after = lines(out / "manifests/train.tsv")
    assert after[0] == before[0] == str(dedup_prepared.resolve())
    assert set(after[1:]) < set(before[1:])
    assert len(before) - len(after) == report["removed_segments"] > 0
    assert report["hours_removed"] == pytest.approx(
        sum(int(x.split("\t")[1]) for x in set(before) - set(after)) / SAMPLE_RATE / 3600,
        abs=1e-3)
    for valid in sorted((dedup_prepared / "manifests").glob("valid*.tsv")):
        assert (out / "manifests" / valid.name).read_bytes() == valid.read_bytes()
    # each manifest has its segment index, listing its rows (what the training tasks read)
    for tsv in sorted((out / "manifests").glob("*.tsv")):
        index = segment_index.open_index(tsv)
        rows = lines(tsv)[1:]
        assert index.rows == len(rows)
        assert [":".join(map(str, index.entry(i))) for i in range(index.rows)] == [
            r.split("\t")[0] for r in rows]
    assert sum(c["hours_removed"] for c in report["per_channel"].values()) == pytest.approx(
        report["hours_removed"], abs=1e-3)
    assert report["examples"] and (out / "report.png").stat().st_size > 1000
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("dedup").experiment_id])
    assert runs[0].data.metrics["truth/recall"] == pytest.approx(truth["recall"])
    assert runs[0].data.metrics["hours_removed"] == pytest.approx(report["hours_removed"])
