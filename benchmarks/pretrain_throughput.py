"""Pre-training throughput: speechfm's fairseq launcher against plain `fairseq-hydra-train`, and
a sweep of the fast paths (speechfm/engine/fairseq/fastpaths.py) on and off.

CPU (always): the `tiny` preset, updates/s and audio seconds/s. With `--device cuda` also the
`base` preset on one GPU: audio seconds/s and model FLOP utilisation (MFU) in fp16 and bf16.
`--sweep` instead checks every fast path against plain fairseq on the device (float32), then
times fairseq's trainer in this process, row by row: Base at two batch sizes in fp16 and bf16
with all fast paths off, all on, and each one off in turn, torch.compile once, Large and X-Large
once; audio-s/s, updates/s, MFU (FLOPs counted from each batch's shape, speechfm.pretrain.flops)
and peak GPU memory per row (rows past a time budget are listed as skipped), the best Base row
last. On CPU the same matrix runs at tiny scale (tiny preset, fp32 for fp16, small batches).
Runs on synthetic audio (noise and tones packed into an uncompressed tar shard with fairseq
manifests, the layout `prepare` writes), needs no other input, prints the GPU name; on ROCm it
sets MIOPEN_FIND_MODE=2.

    python benchmarks/pretrain_throughput.py                         # CPU only, ~3 min on 2 cores
    python benchmarks/pretrain_throughput.py --device cuda           # + Base on the GPU, ~4 min
    python benchmarks/pretrain_throughput.py --device cuda --sweep   # the GPU sweep, <= 8 min
    python benchmarks/pretrain_throughput.py --device cpu --sweep    # tiny-scale sweep, a few min
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
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


def _flac_clip(args: tuple[int, float, int]) -> bytes:
    """One noise-and-tone FLAC clip (16-bit) of `seconds`, seeded by (seed, index)."""
    index, seconds, seed = args
    rng = np.random.default_rng((seed, index))
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    audio = 0.1 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)
    buf = io.BytesIO()
    sf.write(buf, audio.astype(np.float32), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()  # not tell(): the encoder seeks back to finish its header


def synthetic_shards(out: Path, seconds: list[float], seed: int = 0) -> Path:
    """FLAC clips of the given lengths in `out/shards/synth/0001.tar` (encoded in parallel);
    fairseq manifests in `out/manifests`."""
    from concurrent.futures import ProcessPoolExecutor

    shard = out / "shards" / "synth" / "0001.tar"
    shard.parent.mkdir(parents=True)
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        clips = list(pool.map(_flac_clip, [(i, s, seed) for i, s in enumerate(seconds)],
                              chunksize=4))
    with tarfile.open(shard, "w") as tar:
        for i, data in enumerate(clips):
            info = tarfile.TarInfo(f"clip{i:04d}.flac")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    manifests = out / "manifests"
    manifests.mkdir()
    with tarfile.open(shard) as tar:
        rows = [f"shards/synth/0001.tar:{m.offset_data}:{m.size}\t{int(s * SAMPLE_RATE)}"
                for m, s in zip(tar, seconds)]
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
           "--tracking-uri", f"sqlite:///{out.parent / 'mlflow.db'}",
           *[x for item in overrides for x in ("--set", item)]]
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


def model_config(preset: str, overrides: list[str] = ()) -> dict:
    """The resolved fairseq model config of a preset (what the FLOP count reads)."""
    sys.path.insert(0, str(ROOT / "src"))
    from speechfm.core.presets import load_pretrain
    from speechfm.engine.fairseq import compose_config

    return compose_config(load_pretrain(preset)["fairseq"], overrides=list(overrides))["model"]


# --- the fast-path sweep (in this process: fairseq's Trainer, row by row) ------------------------

EXACT_PATHS = ("sdpa_attention", "fused_adam", "precompute_masks", "sync_free", "bucket_batches")
ALL_ON = {**{name: True for name in EXACT_PATHS}, "loader_threads": 1}
COMPILE_RESERVE_S = 150  # time a compiled row may take (its compile): started only if left
# The matrix per device: the models standing for Base / Large / X-Large, the two Base batch sizes
# (samples per GPU; the reference's Base batch is 2.8 M), the precisions, the audio.
SWEEP = {
    "cuda": {"budget_s": 400,
             "models": {"base": ("base", []), "large": ("large", []), "xlarge": ("xlarge", [])},
             "batches": [1_400_000, 2_800_000], "precisions": ["fp16", "bf16"],
             "large_tokens": {"large": 1_800_000, "xlarge": 960_000}, "workers": 6,
             "clips": 400, "median_seconds": 8.0, "warmup": 3, "updates": 10},
    "cpu": {"budget_s": 900,
            "models": {"base": ("tiny", []),
                       "large": ("tiny", ["model.encoder_layers=6", "model.encoder_embed_dim=192",
                                          "model.encoder_ffn_embed_dim=768"]),
                       "xlarge": ("tiny", ["model.encoder_layers=8", "model.encoder_embed_dim=256",
                                           "model.encoder_ffn_embed_dim=1024"])},
            "batches": [64_000, 128_000], "precisions": ["fp32", "bf16"],
            "large_tokens": {"large": 128_000, "xlarge": 128_000}, "workers": 1,
            "clips": 40, "median_seconds": 2.5, "warmup": 1, "updates": 3},
}


def sweep_rows(device: str) -> list[dict]:
    """The rows of the sweep: name, model role, precision, max_tokens, fast-path switches; the
    most telling first (a run out of time loses the last ones)."""
    spec = SWEEP[device]
    last, tokens = spec["precisions"][-1], spec["batches"][-1]
    rows = [{"model": "base", "precision": precision, "tokens": batch, "fast": fast, "name": name}
            for precision in spec["precisions"] for batch in spec["batches"]
            for name, fast in (("plain fairseq", {}), ("all fast paths", ALL_ON))]
    rows += [{"model": role, "precision": last, "tokens": large, "fast": ALL_ON,
              "name": "all fast paths"} for role, large in spec["large_tokens"].items()]
    rows += [{"model": "base", "precision": precision, "tokens": tokens,
              "fast": {**ALL_ON, path: False}, "name": f"all but {path}"}
             for precision in spec["precisions"] for path in EXACT_PATHS]
    rows.append({"model": "base", "precision": last, "tokens": tokens,  # compiling takes longest
                 "fast": {**ALL_ON, "compile_layers": True}, "name": "all + compile_layers"})
    return rows


def sweep_lengths(device: str, seed: int = 0) -> list[float]:
    """Clip lengths of the sweep's audio: log-normal around the median (VAD segments), 2-30 s on
    a GPU, 1-4 s on CPU."""
    spec = SWEEP[device]
    low, high = (2.0, 30.0) if device == "cuda" else (1.0, 4.0)
    rng = np.random.default_rng(seed)
    return [float(x) for x in np.clip(rng.lognormal(np.log(spec["median_seconds"]), 0.6,
                                                    spec["clips"]), low, high).round(2)]


def sweep_config(row: dict, manifest: Path, device: str) -> tuple[dict, dict]:
    """(the row's full fairseq config, its model config) for one GPU or one CPU process."""
    from speechfm.core.presets import load_pretrain
    from speechfm.engine.fairseq import compose_config
    from speechfm.engine.fairseq.job import distributed_settings
    from speechfm.engine.fairseq.userdir import ensure_indexes

    preset, extra = SWEEP[device]["models"][row["model"]]
    cpu = device == "cpu"
    precision = {"fp16": ["common.fp16=true", "common.bf16=false"],
                 "bf16": ["common.fp16=false", "common.bf16=true"],
                 "fp32": ["common.fp16=false", "common.bf16=false"]}[row["precision"]]
    overrides = [*extra, *precision, f"dataset.max_tokens={row['tokens']}",
                 f"dataset.num_workers={SWEEP[device]['workers']}", "dataset.batch_size=null",
                 "common.seed=1", "common.log_interval=1000", "optimization.update_freq=[1]"]
    config = compose_config(load_pretrain(preset)["fairseq"], {"task": {"data": str(manifest)}},
                            distributed_settings(1, cpu), overrides=overrides)
    ensure_indexes(config)  # the segment index the base/large/xlarge task reads
    return config, config["model"]


def run_row(row: dict, manifest: Path, device: str, warmup: int, updates: int) -> dict:
    """Build fairseq's task, model, criterion and Trainer with the row's fast paths installed and
    time `updates` train steps after `warmup` (loader workers, optimizer, logging included)."""
    import gc

    import torch
    from fairseq import tasks
    from fairseq.trainer import Trainer
    from omegaconf import OmegaConf

    from speechfm.engine.fairseq import fastpaths
    from speechfm.pretrain.flops import training_flops

    config, model_cfg = sweep_config(row, manifest, device)
    np.random.seed(1)
    torch.manual_seed(1)
    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with fastpaths.installed(row["fast"], config):
        cfg = OmegaConf.create(config)
        task = tasks.setup_task(cfg.task)
        model = task.build_model(cfg.model)
        criterion = task.build_criterion(cfg.criterion)
        trainer = Trainer(cfg, task, model, criterion)
        epoch_itr = trainer.get_train_iterator(epoch=1)
        batches = epoch_itr.next_epoch_itr(shuffle=True)
        samples = flops = 0.0
        items = []
        start = time.perf_counter()
        for i, sample in enumerate(batches):
            if i == warmup:
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
            source = sample["net_input"]["source"]
            trainer.train_step([sample], raise_oom=True)  # fairseq would skip the batch
            if i >= warmup:
                samples += source.numel()
                flops += training_flops(model_cfg, *source.shape).total
                items.append(source.shape)
            if i + 1 == warmup + updates:
                break
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        del trainer, model, criterion, task, batches, epoch_itr
        gc.collect()
    done = len(items)
    if done < updates:
        raise RuntimeError(f"only {warmup + done} batches in an epoch: make the audio longer")
    return {"updates_s": done / elapsed, "audio_s_s": samples / SAMPLE_RATE / elapsed,
            "flops_s": flops / elapsed, "peak_gib": peak,
            "batch": f"{np.mean([b for b, _ in items]):.1f} x "
                     f"{np.mean([t for _, t in items]) / SAMPLE_RATE:.1f} s"}


def quiet() -> None:
    """Only warnings from fairseq, the fast paths and torch's compiler (their INFO/DEBUG lines
    would bury the table)."""
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("fairseq", "speechfm", "filelock", "torch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")


def device_name(device: str) -> tuple[str, float | None]:
    """The device's name (from torch) and its dense fp16/bf16 peak in FLOP/s if known."""
    import torch

    if device == "cpu":
        return f"CPU, {os.cpu_count()} cores (torch {torch.__version__})", None
    name = torch.cuda.get_device_name()
    return name, next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def print_exactness(device: str) -> None:
    from speechfm.engine.fairseq.fastcheck import check

    print(f"exactness against plain fairseq on {device} (tiny model, float32, relative errors):",
          flush=True)
    for row in check(device):
        parts = [f"{k} {row[k]:.1e}" for k in ("loss", "grads", "params") if row.get(k) is not None]
        print(f"  {row['path']:26s} {', '.join(parts)}", flush=True)


def print_batch_fill(max_tokens: int = 2_800_000, crop: int = 960_000, seed: int = 0) -> None:
    """How full fairseq's batches are and how full `bucket_batches` makes them, on synthetic
    length distributions (Base's max_tokens and 2-60 s crops): pure arithmetic, any device."""
    from fairseq.data import data_utils

    from speechfm.engine.fairseq import fastpaths

    rng = np.random.default_rng(seed)
    dists = {"15 s clips (the launcher benchmark)": np.full(400, 240_000),
             "10-16 s uniform (LibriSpeech-like)": rng.integers(160_000, 256_000, 4000),
             "log-normal, median 6 s (VAD segments)":
                 rng.lognormal(np.log(96_000), 0.7, 4000).astype(np.int64),
             "2-60 s uniform": rng.integers(32_000, 960_001, 4000)}
    print(f"batch fill at max_tokens {max_tokens:,} (crops 2-{crop / SAMPLE_RATE:g} s): "
          "fairseq (multiple of 8, longest item counted) -> bucket_batches", flush=True)
    for name, sizes in dists.items():
        sizes = np.minimum(sizes[sizes >= 32_000], crop)
        order = np.lexsort([rng.permutation(len(sizes)), sizes])[::-1]  # fairseq's order
        plain = data_utils.batch_by_size(order, None, num_tokens_vec=sizes[order],
                                         max_tokens=max_tokens, required_batch_size_multiple=8)
        before = fastpaths.batch_fill(sizes, plain, max_tokens, fill_crop=False)
        filled = fastpaths.fill_batches(sizes[order], order, max_tokens)
        after = fastpaths.batch_fill(sizes, filled, max_tokens, fill_crop=True)
        print(f"  {name:40s} fill {100 * before['fill']:5.1f}% -> {100 * after['fill']:5.1f}%, "
              f"cropped away {100 * before['crop_waste']:4.1f}% -> "
              f"{100 * after['crop_waste']:4.1f}%, items/batch {before['items_per_batch']:5.1f} "
              f"-> {after['items_per_batch']:5.1f}", flush=True)


def sweep(device: str, work: Path, peak_override: float | None) -> int:
    """The whole sweep (see the module docstring); prints one line per row, the best Base last."""
    import torch

    from speechfm.pretrain.flops import describe

    if device == "cuda" and torch.version.hip:
        os.environ.setdefault("MIOPEN_FIND_MODE", "2")  # without it MIOpen searches 10-20x longer
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA/ROCm device visible", file=sys.stderr)
        return 2
    quiet()
    name, peak = device_name(device)
    peak = peak_override * 1e12 if peak_override else peak
    spec = SWEEP[device]
    print(f"device: {name}; peak {peak / 1e12:.0f} TFLOP/s dense fp16/bf16" if peak
          else f"device: {name}; peak unknown (MFU not shown; --peak-tflops sets it)", flush=True)
    for role, (preset, extra) in spec["models"].items():
        print(f"  {role} ({preset}{' ' + ' '.join(extra) if extra else ''}): "
              f"{describe(model_config(preset, extra), 15.0)}", flush=True)
    print_exactness(device)
    print_batch_fill()
    lengths = sweep_lengths(device)
    manifest = synthetic_shards(work / "sweep-data", lengths)
    print(f"audio: {len(lengths)} synthetic FLAC clips, {sum(lengths) / 60:.1f} min, "
          f"{min(lengths):g}-{max(lengths):g} s (median {np.median(lengths):g} s); "
          f"{spec['warmup']} warm-up + {spec['updates']} timed updates per row", flush=True)
    quiet()
    header = (f"{'model':6s} {'prec':4s} {'max_tokens':>10s} {'fast paths':28s} {'updates/s':>9s} "
              f"{'audio-s/s':>9s} {'MFU':>6s} {'peak GiB':>8s}  batch")
    print(header, flush=True)
    results = []
    started = time.monotonic()
    for row in sweep_rows(device):
        reserve = COMPILE_RESERVE_S if row["fast"].get("compile_layers") else 0
        if time.monotonic() - started + reserve > spec["budget_s"]:
            print(f"{row['model']:6s} {row['precision']:4s} {row['tokens']:>10d} "
                  f"{row['name']:28s} skipped: past the sweep's {spec['budget_s']} s", flush=True)
            continue
        try:
            r = run_row(row, manifest, device, spec["warmup"], spec["updates"])
        except (RuntimeError, ValueError) as exc:  # e.g. out of memory: report, go on
            print(f"{row['model']:6s} {row['precision']:4s} {row['tokens']:>10d} "
                  f"{row['name']:28s} FAILED: {str(exc).splitlines()[0][:120]}", flush=True)
            if device == "cuda":
                torch.cuda.empty_cache()
            continue
        results.append((row, r))
        print(format_row(row, r, peak), flush=True)
        quiet()  # a compiled model's first run may switch logging back on
    base = [(row, r) for row, r in results if row["model"] == "base"]
    if not base:
        return 1
    best = max(base, key=lambda item: item[1]["audio_s_s"])
    print("best Base row:", flush=True)
    print(format_row(*best, peak), flush=True)
    return 0


def format_row(row: dict, r: dict, peak: float | None) -> str:
    mfu = f"{100 * r['flops_s'] / peak:5.1f}%" if peak else "   n/a"
    memory = f"{r['peak_gib']:8.1f}" if r["peak_gib"] is not None else "       -"
    return (f"{row['model']:6s} {row['precision']:4s} {row['tokens']:>10d} {row['name']:28s} "
            f"{r['updates_s']:9.2f} {r['audio_s_s']:9.1f} {mfu} {memory}  {r['batch']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--cpu-updates", type=int, default=30, help="0 skips the CPU part")
    parser.add_argument("--gpu-updates", type=int, default=40)
    parser.add_argument("--sweep", action="store_true",
                        help="the fast-path sweep on --device (instead of the launcher comparison)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense fp16/bf16 peak, if it is not in the table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="speechfm-bench-") as tmp:
        work = Path(tmp)
        if args.sweep:
            return sweep(args.device, work, args.peak_tflops)
        if args.cpu_updates:
            print(f"CPU: {os.cpu_count()} cores; tiny preset, {args.cpu_updates} updates",
                  flush=True)
            cpu_data = synthetic_shards(work / "cpu-data", [3.0] * 24)
            measure("tiny-cpu", "tiny", cpu_data, work, "cpu", 2.0,
                    [f"optimization.max_update={args.cpu_updates}",
                     "dataset.disable_validation=true", "checkpoint.no_save=true",
                     "common.log_interval=5"])
        if args.device == "cuda":
            import torch

            name = torch.cuda.get_device_name()
            peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
            print(f"GPU: {name}; base preset, {args.gpu_updates} updates, 15 s clips", flush=True)
            gpu_data = synthetic_shards(work / "gpu-data", [15.0] * 48)
            from speechfm.pretrain.flops import describe, flops_per_audio_second

            flops = flops_per_audio_second(model_config("base"), 15.0)
            print(f"  base: {describe(model_config('base'), 15.0)}")
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
