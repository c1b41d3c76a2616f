"""Throughput of `speechfm serve` vs a plain transformers ASR pipeline loop, same files, same model.

A Base-size wav2vec2 CTC model (Wav2Vec2Config() defaults, ~95M parameters, random weights) is
saved to a temporary registry. For 1, 4 and 8 concurrent clients we measure requests/s and
p50/p95 latency of (a) the service over HTTP on 127.0.0.1 (micro-batched; float32 and dynamic int8)
and (b) the baseline: `pipeline("automatic-speech-recognition")` called from as many threads.
Usage: python benchmarks/serve_throughput.py [--requests 16] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ["<pad>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyzåäö"]
LEVELS = (1, 4, 8)


def build_model(out: Path) -> Path:
    """Save a random Base-size CTC model and its processor as fine-tuning would."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    out.mkdir(parents=True)
    (out / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(out / "vocab.json"), unk_token="<unk>",
                                     pad_token="<pad>", word_delimiter_token="|",
                                     bos_token=None, eos_token=None)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=False)
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=len(VOCAB), pad_token_id=0))
    model.save_pretrained(out)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)
    return out


def make_clips(folder: Path, count: int, seconds: float) -> list[Path]:
    """Modulated-noise WAV clips of `seconds` +-25 %, 16 kHz (what the service decodes anyway)."""
    import soundfile

    rng = np.random.default_rng(0)
    clips = []
    for i in range(count):
        n = int(16000 * seconds * rng.uniform(0.75, 1.25))
        t = np.arange(n) / 16000
        audio = 0.3 * rng.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
        path = folder / f"clip{i:02d}.wav"
        soundfile.write(path, audio.astype(np.float32), 16000, subtype="PCM_16")
        clips.append(path)
    return clips


def run_clients(call, clips: list[Path], clients: int, requests: int) -> dict[str, float]:
    """Send `requests` calls from `clients` threads; requests/s and latency percentiles."""
    latencies: list[float] = []
    next_index = iter(range(requests))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            t0 = time.perf_counter()
            call(clips[i % len(clips)])
            with lock:
                latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"rps": requests / elapsed, "p50": float(np.percentile(latencies, 50)),
            "p95": float(np.percentile(latencies, 95))}


def start_service(models: Path, dtype: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "speechfm", "-q", "serve", "--port", str(port), "--models",
         str(models), "--tracking-uri", "none", "--preload", "base", "--dtype", dtype,
         "--max-batch", "8", "--max-wait-ms", "20"],
        env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise RuntimeError("the service exited during start-up")
        try:
            if httpx.get(f"{base}/v1/ready", timeout=5).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the service did not become ready")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16, help="requests per measurement")
    parser.add_argument("--seconds", type=float, default=3.0, help="mean clip length")
    args = parser.parse_args()
    import torch
    from transformers import pipeline

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        tmp = Path(tmp)
        model_dir = build_model(tmp / "models" / "base")
        clips = make_clips(tmp, 16, args.seconds)
        asr = pipeline("automatic-speech-recognition", model=str(model_dir),
                       feature_extractor=str(model_dir), tokenizer=str(model_dir), device=-1)
        services = {dtype: start_service(tmp / "models", dtype, tmp)
                    for dtype in ("float32", "int8")}
        local = threading.local()

        def via_http(base: str):
            def call(path: Path) -> None:
                if not hasattr(local, base):
                    setattr(local, base, httpx.Client(base_url=base, timeout=300))
                with path.open("rb") as f:
                    r = getattr(local, base).post("/v1/models/base/transcribe",
                                                  files={"file": (path.name, f)})
                r.raise_for_status()
            return call

        calls = {"pipeline": lambda path: asr(str(path)),
                 **{f"serve-{dtype}": via_http(base) for dtype, (_, base) in services.items()}}
        results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in calls}
        try:
            for name, call in calls.items():  # warm-up: first call loads lazily / compiles
                run_clients(call, clips, 1, 2)
            for clients in LEVELS:  # interleaved, so load drift hits every contender alike
                for name, call in calls.items():
                    results[name][clients] = r = run_clients(call, clips, clients, args.requests)
                    print(f"{name:16s} clients={clients}: {r['rps']:.2f} req/s, "
                          f"p50 {r['p50'] * 1000:.0f} ms, p95 {r['p95'] * 1000:.0f} ms",
                          flush=True)
        finally:
            for proc, _ in services.values():
                proc.terminate()
                proc.wait(30)
    print(f"\n{args.requests} requests per cell, clips {args.seconds:g} s +-25 %, "
          f"torch threads {torch.get_num_threads()}")
    print("| contender | clients | req/s | p50 ms | p95 ms | vs pipeline |")
    print("|---|---|---|---|---|---|")
    for name, per in results.items():
        for clients, r in per.items():
            ratio = r["rps"] / results["pipeline"][clients]["rps"]
            print(f"| {name} | {clients} | {r['rps']:.2f} | {r['p50'] * 1000:.0f} | "
                  f"{r['p95'] * 1000:.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
