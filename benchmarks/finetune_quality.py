"""Does the pipeline learn? CER/WER on the demo's held-out test split after `tiny` CTC fine-tuning,
with a `tiny` fairseq pre-training first (on the demo archive, through `speechfm prepare`, as the
main job does) and without one (the baseline), same fine-tuning budget.

    python benchmarks/finetune_quality.py [--demo DIR] [--work DIR] [--pretrain-updates N] [--epochs N]

Prints, per run, the test CER/WER, wall and CPU seconds of training (CPU seconds matter on a
shared machine), and the ratio of the pre-trained run's CER to the baseline's. The target of the
issue: CER <= 15% within 20 minutes of training on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def speechfm(*args: str) -> tuple[float, float]:
    """Run one CLI verb of this checkout; returns (wall seconds, CPU seconds of the child)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "speechfm", "-q", *map(str, args)], check=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return time.perf_counter() - start, cpu


def finetune_and_score(demo: Path, out: Path, extra: list[str]) -> dict:
    wall, cpu = speechfm("finetune", "--labeled", demo / "labeled", "--out", out, "--preset",
                         "tiny", "--tracking-uri", f"sqlite:///{out.parent / 'mlflow.db'}", *extra)
    speechfm("evaluate", "--model", out / "model", "--test", demo / "labeled" / "test.tsv",
             "--out", out / "eval", "--tracking-uri", f"sqlite:///{out.parent / 'mlflow.db'}")
    scores = json.loads((out / "eval" / "metrics.json").read_text())["test"]
    return {"cer": scores["cer"], "wer": scores["wer"], "train_wall_s": round(wall, 1),
            "train_cpu_s": round(cpu, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", type=Path, default=Path("/tmp/speechfm_quality/demo"))
    p.add_argument("--work", type=Path, default=Path("/tmp/speechfm_quality/runs"))
    p.add_argument("--pretrain-updates", type=int, default=300, help="as the main job")
    p.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs of both runs")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="fine-tuning override passed to both runs (KEY=VALUE)")
    args = p.parse_args()
    if not (args.demo / "labeled" / "test.tsv").exists():
        speechfm("synth", "--out", args.demo)  # the default demo: 600/60/60 utterances
    args.work.mkdir(parents=True, exist_ok=True)
    extra = [x for item in [f"num_train_epochs={args.epochs}", *args.overrides]
             for x in ("--set", item)]

    baseline = finetune_and_score(args.demo, args.work / "scratch", extra)
    print(f"no pre-training : CER {baseline['cer']:.2%} WER {baseline['wer']:.2%} "
          f"train {baseline['train_wall_s']:.0f} s wall, {baseline['train_cpu_s']:.0f} CPU s",
          flush=True)

    prep_wall, _ = speechfm("prepare", args.demo / "archive", "--out", args.work / "prepared")
    manifest = args.work / "prepared" / "manifests"  # the demo archive's speech, as the main job
    print(f"prepare of the demo archive: {prep_wall:.0f} s wall", flush=True)
    pre_wall, pre_cpu = speechfm(
        "pretrain", "--preset", "tiny", "--manifest", manifest, "--out", args.work / "pretrain",
        "--cpu", "--tracking-uri", f"sqlite:///{args.work / 'mlflow.db'}",
        "--updates", str(args.pretrain_updates))
    best = args.work / "pretrain" / "checkpoint_last.pt"
    with_pt = finetune_and_score(args.demo, args.work / "pretrained",
                                 ["--init", str(best), *extra])
    print(f"tiny pre-training ({args.pretrain_updates} updates, {pre_wall:.0f} s wall, "
          f"{pre_cpu:.0f} CPU s) + fine-tuning: CER {with_pt['cer']:.2%} WER {with_pt['wer']:.2%} "
          f"train {with_pt['train_wall_s']:.0f} s wall, {with_pt['train_cpu_s']:.0f} CPU s")
    print(f"ratio of CER, pre-trained / no pre-training: {with_pt['cer'] / baseline['cer']:.2f}")
    print(json.dumps({"scratch": baseline, "pretrained": with_pt,
                      "pretrain": {"wall_s": pre_wall, "cpu_s": pre_cpu}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
