"""Training curves and headline metrics as small files for `dvc plots` and `dvc metrics`.

MLflow holds the full history of every run; these files are the part DVC versions with the
pipeline: `curve.tsv` (one row per logged step), `metrics.json` (the last values of every logged
quantity, detail) and `summary.json`. Every stage writes a `summary.json` of a few headline
numbers, and only those are DVC metrics, so `dvc metrics show` stays one narrow table: stages
share column names (`loss`, `wer`, `precision`, ...) and each row (file) says what they measure.
The detail stays in JSON files that are no metric, and in `dvc plots`.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SUMMARY = "summary.json"
SUMMARY_DIGITS = 4


def write_summary(out: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Write `out/summary.json`, a stage's headline numbers (None dropped, floats to 4 digits,
    nested one level for per-layer or per-set values), atomically; returns what it wrote."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items() if v is not None}
        return round(float(value), SUMMARY_DIGITS) if isinstance(value, float) else value

    summary = clean(values)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (SUMMARY + ".part")
    tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / SUMMARY)
    return summary


FAIRSEQ_LINE = re.compile(r"\| (train_inner|valid) \| (\{.*\})\s*$")


def fairseq_curve(train_log: Path) -> list[dict[str, Any]]:
    """Rows of (step, split, loss, accuracy, ...) from a fairseq JSON-format training log."""
    rows = []
    for line in train_log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = FAIRSEQ_LINE.search(line)
        if not match:
            continue
        split, stats = match.group(1), json.loads(match.group(2))
        prefix = "valid_" if split == "valid" else ""
        step = stats.get("num_updates") or stats.get(f"{prefix}num_updates")
        row: dict[str, Any] = {"step": int(float(step or 0)), "split": "valid" if prefix else "train"}
        for key in ("loss", "accuracy", "wer", "uer", "prob_perplexity", "code_perplexity", "lr"):
            value = stats.get(prefix + key)
            if value is not None:
                row[key] = float(value)
        rows.append(row)
    return rows


def write_curve(rows: Iterable[dict[str, Any]], out: Path) -> dict[str, Any]:
    """Write `out/curve.tsv`, `out/metrics.json` (last train and valid values) and
    `out/summary.json` (final train and valid loss, and the valid WER where there is one)."""
    rows = list(rows)
    fields = ["step", "split"] + sorted({k for r in rows for k in r} - {"step", "split"})
    with (out / "curve.tsv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    summary: dict[str, Any] = {}
    for row in rows:
        summary[row["split"]] = {k: v for k, v in row.items() if k != "split"}
    (out / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    train, valid = summary.get("train", {}), summary.get("valid", {})
    write_summary(out, {"loss": train.get("loss"), "valid_loss": valid.get("loss"),
                        "wer": valid.get("wer")})
    return summary


def trainer_curve(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows from a transformers Trainer's `state.log_history`."""
    rows = []
    for entry in log_history:
        if "loss" in entry:
            rows.append({"step": entry["step"], "split": "train", "loss": entry["loss"],
                         "lr": entry.get("learning_rate")})
        elif "eval_loss" in entry:
            rows.append({"step": entry["step"], "split": "valid", "loss": entry["eval_loss"],
                         "wer": entry.get("eval_wer"), "cer": entry.get("eval_cer")})
    return [{k: v for k, v in r.items() if v is not None} for r in rows]
