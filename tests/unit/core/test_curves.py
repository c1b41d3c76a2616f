"""Curves and headline metrics for DVC: the detail in metrics.json, a few numbers in summary.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from speechfm.core.curves import fairseq_curve, write_curve, write_summary

LOG = """\
2026-01-01 | INFO | train_inner | {"epoch": 1, "update": 0.5, "loss": "4.123456", "accuracy": "0.1", "num_updates": "5", "lr": "1e-05"}
2026-01-01 | INFO | valid | {"epoch": 1, "valid_loss": "3.98765", "valid_accuracy": "0.2", "valid_num_updates": "5"}
2026-01-01 | INFO | train_inner | {"epoch": 2, "update": 1.0, "loss": "3.5", "accuracy": "0.3", "num_updates": "10", "lr": "2e-05"}
2026-01-01 | INFO | valid | {"epoch": 2, "valid_loss": "3.25", "valid_wer": "91.5", "valid_num_updates": "10"}
"""


def test_a_fairseq_log_gives_the_curve_the_detail_and_the_headline(tmp_path: Path) -> None:
    (tmp_path / "train.log").write_text(LOG)
    rows = fairseq_curve(tmp_path / "train.log")
    assert [(r["step"], r["split"]) for r in rows] == [(5, "train"), (5, "valid"), (10, "train"),
                                                       (10, "valid")]
    write_curve(rows, tmp_path)
    with (tmp_path / "curve.tsv").open() as f:
        table = list(csv.DictReader(f, delimiter="\t"))
    assert [r["split"] for r in table] == ["train", "valid", "train", "valid"]
    detail = json.loads((tmp_path / "metrics.json").read_text())
    assert detail["train"]["accuracy"] == 0.3 and detail["valid"]["step"] == 10
    assert json.loads((tmp_path / "summary.json").read_text()) == {
        "loss": 3.5, "valid_loss": 3.25, "wer": 91.5}


def test_a_summary_drops_missing_values_rounds_and_replaces_atomically(tmp_path: Path) -> None:
    write_summary(tmp_path, {"hours_kept": 1.234567891, "precision": None,
                             "lur": {1: 0.123456, 2: None}, "segments": 7})
    assert json.loads((tmp_path / "summary.json").read_text()) == {
        "hours_kept": 1.2346, "lur": {"1": 0.1235}, "segments": 7}
    write_summary(tmp_path, {"hours_kept": 2.0})
    assert json.loads((tmp_path / "summary.json").read_text()) == {"hours_kept": 2.0}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
