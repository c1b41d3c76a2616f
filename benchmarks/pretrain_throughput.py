"""Pre-training throughput: speechfm's fairseq launcher against plain `fairseq-hydra-train`.

CPU (always): the `tiny` preset, updates/s and audio seconds/s. With `--device cuda` also the
`base` preset on one GPU: audio seconds/s and model FLOP utilisation (MFU) in fp16 and bf16.
Runs on synthetic audio (noise and tones packed into an uncompressed tar shard with fairseq
manifests, exactly the layout `prepare` writes), needs no other input, and prints the GPU name.

    python benchmarks/pretrain_throughput.py                 # CPU only, ~3 minutes on 2 cores
    python benchmarks/pretrain_throughput.py --device cuda   # + Base on the GPU, ~4 minutes
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000
# dense fp16/bf16 tensor-core peaks (FLOP/s), by a substring of torch.cuda.get_device_name()
PEAK_FLOPS = {"H200": 989.4e12, "H100 PCIe": 756e12, "H100": 989.4e12, "A100": 312e12,
              "L40S": 362e12, "MI250X": 191.5e12, "MI300X": 1307e12}
LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}).*train_inner.*?(\{.*\})")


def synthetic_shards(out: Path, clips: int, seconds: float, seed: int = 0) -> Path:
    """Noise-and-tone FLAC clips in `out/shards/synth/0001.tar`; manifests in `out/manifests`."""
    rng = np.random.default_rng(seed)
    shard = out / "shards" / "synth" / "0001.tar"
    shard.parent.mkdir(parents=True)
    frames = int(seconds * SAMPLE_RATE)
    t = np.arange(frames) / SAMPLE_RATE
    with tarfile.open(shard, "w") as tar:
        for i in range(clips):
            audio = 0.1 * rng.standard_normal(frames) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)
            buf = io.BytesIO()
            sf.write(buf, audio.astype(np.float32), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            data = buf.getvalue()  # not tell(): the encoder seeks back to finish its header
            info = tarfile.TarInfo(f"clip{i:04d}.flac")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    manifests = out / "manifests"
    manifests.mkdir()
    with tarfile.open(shard) as tar:
        rows = [f"shards/synth/0001.tar:{m.offset_data}:{m.size}\t{frames}" for m in tar]
    (manifests / "train.tsv").write_text("\n".join([str(out), *rows]) + "\n")
    (manifests / "valid.tsv").write_text("\n".join([str(out), *rows[:2]]) + "\n")
    return manifests


def updates_per_second(log_text: str) -> tuple[float, float]:
    """(updates/s, mean batch size) over the train_inner lines after the first (warm-up)."""
    points = []
    for match in LINE.finditer(log_text):
        stats = json.loads(match.group(2))
        when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        points.append((when, int(stats["num_updates"]), float(stats["bsz"])))
    if len(points) < 3:
        raise RuntimeError("too few train_inner lines to time:\n" + log_text[-3000:])
    (t0, u0, _), (t1, u1, _) = points[1], points[-1]
    return (u1 - u0) / (t1 - t0), float(np.mean([p[2] for p in points[2:]]))


def run_speechfm(preset: str, manifest: Path, out: Path, device: str, overrides: list[str],
                 dry_run: bool = False) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "speechfm", "-q", "pretrain", "--preset", preset,
           "--manifest", str(manifest), "--out", str(out), "--simulate-gpus", "1",
           "--tracking-uri", f"sqlite:///{out.parent / 'mlflow.db'}", *overrides]
    if device == "cpu":
        cmd.append("--cpu")
    if dry_run:
        cmd.append("--dry-run")
    subprocess.run(cmd, check=True, env=env, cwd=out.parent, stdout=subprocess.DEVNULL)
    return "" if dry_run else (out / "train.log").read_text()


def run_fairseq_hydra_train(preset: str, manifest: Path, out: Path, device: str,
                            overrides: list[str]) -> str:
    """The reference's way: `fairseq-hydra-train` on the same resolved config (one process)."""
    run_speechfm(preset, manifest, out, device, overrides, dry_run=True)
    config = "# @package _group_\n" + (out / "config.yaml").read_text()
    (out / "baseline.yaml").write_text(config)
    exe = Path(sys.executable).with_name("fairseq-hydra-train")
    proc = subprocess.run([str(exe), "--config-dir", str(out), "--config-name", "baseline",
                           f"hydra.run.dir={out / 'hydra'}"], capture_output=True, text=True,
                          cwd=out.parent, check=False)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return proc.stdout + proc.stderr


def measure(name: str, preset: str, manifest: Path, work: Path, device: str, crop_seconds: float,
            overrides: list[str], baseline: bool = True) -> dict[str, dict[str, float]]:
    """Time the speechfm launcher and (with `baseline`) plain fairseq-hydra-train, same config."""
    results = {}
    for runner in ("speechfm", "fairseq-hydra-train")[: 2 if baseline else 1]:
        out = work / f"{name}-{runner}"
        start = time.monotonic()
        run = run_speechfm if runner == "speechfm" else run_fairseq_hydra_train
        text = run(preset, manifest, out, device, overrides)
        ups, bsz = updates_per_second(text)
        results[runner] = {"updates_s": ups, "audio_s_s": ups * bsz * crop_seconds,
                           "wall_s": time.monotonic() - start}
        print(f"  {name:10s} {runner:20s} {ups:7.3f} updates/s  "
              f"{results[runner]['audio_s_s']:9.1f} audio s/s  (batch {bsz:.1f} x "
              f"{crop_seconds:g} s, run {results[runner]['wall_s']:.0f} s)", flush=True)
    if baseline:
        ratio = results["speechfm"]["audio_s_s"] / results["fairseq-hydra-train"]["audio_s_s"]
        print(f"  {name:10s} ratio speechfm / fairseq-hydra-train: {ratio:.2f}", flush=True)
    return results


def flops_per_audio_second(preset: str, seconds: float, device: str = "cuda") -> float:
    """Training FLOPs (forward + backward) of the Base model per second of audio, counted by
    torch's FLOP counter on one GPU batch."""
    import torch
    from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
    from omegaconf import OmegaConf
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(ROOT / "src"))
    from speechfm.core.presets import load_pretrain
    from speechfm.launch import compose_config

    model_cfg = compose_config(load_pretrain(preset)["fairseq"])["model"]
    model = Wav2Vec2Model(OmegaConf.merge(OmegaConf.structured(Wav2Vec2Config), model_cfg))
    model.to(device)
    criterion = Wav2vecCriterion(None, infonce=True, loss_weights=[0.1, 10])
    batch = 2
    source = torch.randn(batch, int(seconds * SAMPLE_RATE), device=device)
    with FlopCounterMode(display=False) as counter:  # counts do not depend on the dtype
        loss, _, _ = criterion(model, {"net_input": {"source": source}, "id": torch.arange(batch)})
        loss.backward()
    return counter.get_total_flops() / (batch * seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--cpu-updates", type=int, default=30, help="0 skips the CPU part")
    parser.add_argument("--gpu-updates", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="speechfm-bench-") as tmp:
        work = Path(tmp)
        if args.cpu_updates:
            print(f"CPU: {os.cpu_count()} cores; tiny preset, {args.cpu_updates} updates",
                  flush=True)
            cpu_data = synthetic_shards(work / "cpu-data", clips=24, seconds=3.0)
            measure("tiny-cpu", "tiny", cpu_data, work, "cpu", 2.0,
                    [f"optimization.max_update={args.cpu_updates}",
                     "dataset.disable_validation=true", "checkpoint.no_save=true",
                     "common.log_interval=5"])
        if args.device == "cuda":
            import torch

            name = torch.cuda.get_device_name()
            peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
            print(f"GPU: {name}; base preset, {args.gpu_updates} updates, 15 s clips", flush=True)
            gpu_data = synthetic_shards(work / "gpu-data", clips=48, seconds=15.0)
            flops = flops_per_audio_second("base", 15.0)
            print(f"  base: {flops / 1e12:.3f} TFLOP per audio second (forward + backward)")
            common = [f"optimization.max_update={args.gpu_updates}", "common.log_interval=5",
                      "dataset.disable_validation=true", "checkpoint.no_save=true",
                      "dataset.num_workers=4"]
            for precision in ("fp16", "bf16"):  # the reference trained in fp16: baseline there
                flags = ["common.fp16=true"] if precision == "fp16" else [
                    "common.fp16=false", "common.bf16=true"]
                try:
                    results = measure(f"base-{precision}", "base", gpu_data, work, "cuda", 15.0,
                                      common + flags, baseline=precision == "fp16")
                except (RuntimeError, subprocess.CalledProcessError) as exc:
                    print(f"  base-{precision} FAILED: {exc}", flush=True)
                    continue
                for runner, r in results.items():
                    mfu = f"{100 * flops * r['audio_s_s'] / peak:.1f}%" if peak else "n/a (unknown peak)"
                    print(f"  base-{precision} {runner}: MFU {mfu}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
