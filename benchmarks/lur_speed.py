"""LUR speed and memory: speechfm's batched layer IG vs the reference method, side by side.

The reference method is the recipe's: one captum `LayerIntegratedGradients` call per utterance,
layer and predicted character (the forward returns one scalar per batch item), every kept
per-frame attribution held in memory until the end. Both run the whole LUR (every layer) of a
tiny and a small (6-layer, 256-wide) random wav2vec2 CTC model on the same synthetic Finnish
utterances. Each measurement runs in its own single-threaded process, so its peak RSS and its CPU time are its
own (CPU time is the fair clock on a shared machine); the memory check runs each method on N/2
and N utterances.

    /work/main/.venv/bin/python benchmarks/lur_speed.py [--utterances 20] [--steps 50]

`--shape xlarge` times one random X-Large-shaped model (48 layers, 1280 wide, stable layer norm)
on a few utterances, on `--device` (a GPU: the per-character backwards batched), against the
reference method timed on a few of its layers and scaled to all, and against the reference's
"48 jobs of up to 2 days" (one job per layer). `--layers` / `--hidden` shrink the shape for CPU:

    python benchmarks/lur_speed.py --shape xlarge --device cuda --utterances 2 --seconds 5 --steps 8
    python benchmarks/lur_speed.py --shape xlarge --device cpu --layers 4 --hidden 256 \\
        --utterances 2 --seconds 2 --steps 8
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "conv_dim": (32,) * 7},
    "small": {"hidden_size": 256, "num_hidden_layers": 6, "num_attention_heads": 4,
              "intermediate_size": 1024, "conv_dim": (256,) * 7},
}
VOCAB = ["<pad>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyzåäö"]
RECIPE_STEPS = 50  # the recipe's IG steps (section 7)
REFERENCE_JOB_SECONDS = 2 * 24 * 3600  # the reference's LUR: one job per layer (48 for X-Large),
# each of up to 2 days on a GPU


def xlarge_shape(layers: int = 48, hidden: int = 1280) -> dict:
    """wav2vec 2.0 X-Large's layout (stable layer norm, 80-wide heads, FFN 4x), at any size."""
    return {"hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": max(1, hidden // (80 if hidden % 80 == 0 else 64)),
            "intermediate_size": 4 * hidden,
            "do_stable_layer_norm": True, "feat_extract_norm": "layer", "conv_bias": True,
            "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16}


def make_model(name: str, out: Path, shape: dict | None = None) -> Path:
    """A randomly initialised model of preset `name` (or of `shape`), saved with a processor (as
    fine-tuning would)."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(out / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|", bos_token=None, eos_token=None)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)
    torch.manual_seed(0)
    kwargs = {"num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4,
              **(shape or MODELS[name])}
    config = Wav2Vec2Config(vocab_size=len(VOCAB), pad_token_id=0, **kwargs)
    Wav2Vec2ForCTC(config).save_pretrained(out)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)
    return out


def make_data(out: Path, count: int, seconds: float) -> Path:
    """`count` spoken Finnish sentences cut to `seconds`, listed in a labeled TSV."""
    import soundfile as sf

    from speechfm.synth.labeled import make_utterance

    out.mkdir(parents=True, exist_ok=True)
    sentences = (Path(__file__).resolve().parents[1] / "src/speechfm/data/fi_sentences.txt"
                 ).read_text(encoding="utf-8").splitlines()
    lines = ["path\tseconds\tvoice\ttext"]
    for i in range(count):
        audio, voice = make_utterance(sentences[i], (7, i))
        sf.write(out / f"u{i:03d}.flac", audio[: int(seconds * 16000)], 16000)
        lines.append(f"u{i:03d}.flac\t{seconds}\t{voice.name}\t{sentences[i]}")
    (out / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "test.tsv"


def run_speechfm(model: Path, tsv: Path, steps: int, limit: int, out: Path,
                 device: str = "cpu") -> dict:
    from speechfm.interpret.lur import LurRun, analyse

    report = analyse(LurRun(model_dir=model, data=tsv, out=out, steps=steps, utterances=limit,
                            device=device))
    return {"lur": report["lur"], "kept_bytes": (out / "lur_state.npz").stat().st_size,
            "target_batching": report["settings"]["target_batching"]}


def run_reference(model_dir: Path, tsv: Path, steps: int, limit: int, device: str = "cpu",
                  only_layers: list[int] | None = None) -> dict:
    """The reference method (see the module docstring), on `only_layers` if given."""
    import numpy as np
    import torch
    from captum.attr import LayerIntegratedGradients

    from speechfm.interpret.data import list_utterances, load_audio
    from speechfm.interpret.lur import load_model

    model, processor = load_model(model_dir, device, "float32")
    for p in model.parameters():  # as a user's script leaves them
        p.requires_grad_(True)
    layers = model.wav2vec2.encoder.layers
    kept: dict[tuple[int, int], list[torch.Tensor]] = {}
    for utt in list_utterances(tsv)[:limit]:
        values = processor.feature_extractor(load_audio(utt), sampling_rate=16000,
                                             return_tensors="pt").input_values.to(device)
        with torch.no_grad():
            predicted = model(values).logits[0].argmax(-1)
        for layer in (range(len(layers)) if only_layers is None else only_layers):
            for target in sorted(set(predicted.tolist()) - {model.config.pad_token_id}):
                lig = LayerIntegratedGradients(
                    lambda x, c=target: model(x).logits[:, :, c].sum(1), layers[layer])
                attr = lig.attribute(values, baselines=torch.zeros_like(values), n_steps=steps)
                kept.setdefault((layer, target), []).append(
                    attr[0][predicted == target].detach().cpu())
    if device != "cpu":
        torch.cuda.synchronize()
    lur = []
    for layer in range(len(layers)):
        relevant = np.zeros(model.config.hidden_size, dtype=bool)
        for (lay, _), frames in kept.items():
            if lay == layer:
                mean = torch.cat(frames).mean(0).numpy()
                relevant |= (mean > mean.std()) | (mean < -mean.std())
        lur.append(float(100 * relevant.mean()))
    return {"lur": lur, "kept_bytes": sum(t.nbytes for f in kept.values() for t in f),
            "layers_done": len(layers) if only_layers is None else len(only_layers),
            "layers": len(layers)}


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process: prints wall time, peak RSS and what was kept."""
    import torch

    torch.set_num_threads(args.threads)
    import captum.attr  # noqa: F401 - imports are not what is measured
    import matplotlib.pyplot  # noqa: F401
    import transformers
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor  # noqa: F401 - resolve the lazy
    # modules now: importing the wav2vec2 model code costs ~5 s CPU, once per process, in both methods

    transformers.logging.set_verbosity_error()
    start, cpu_start = time.perf_counter(), time.process_time()
    if args.worker == "speechfm":
        result = run_speechfm(args.model, args.data, args.steps, args.limit, Path(args.out),
                              args.device)
    else:
        only = None if not args.only_layers else [int(x) for x in args.only_layers.split(",")]
        result = run_reference(args.model, args.data, args.steps, args.limit, args.device, only)
    result["seconds"] = time.perf_counter() - start
    result["cpu_seconds"] = time.process_time() - cpu_start
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def measure(method: str, model: Path, tsv: Path, steps: int, limit: int, threads: int,
            tmp: Path, device: str = "cpu", only_layers: list[int] | None = None) -> dict:
    out = tempfile.mkdtemp(dir=tmp)
    cmd = [sys.executable, __file__, "--worker", method, "--model", str(model), "--data", str(tsv),
           "--steps", str(steps), "--limit", str(limit), "--threads", str(threads), "--out", out,
           "--device", device]
    if only_layers:
        cmd += ["--only-layers", ",".join(map(str, only_layers))]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{method} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def make_long_data(out: Path, count: int, seconds: float) -> Path:
    """`count` utterances of `seconds`: spoken Finnish sentences one after another (espeak-ng),
    or noise and tones where espeak-ng is not installed (a random model does not care)."""
    import numpy as np
    import soundfile as sf

    out.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * 16000)
    speak = shutil.which("espeak-ng") is not None
    if speak:
        from speechfm.synth.labeled import make_utterance

        sentences = (Path(__file__).resolve().parents[1] / "src/speechfm/data/fi_sentences.txt"
                     ).read_text(encoding="utf-8").splitlines()
    lines = ["path\tseconds\tvoice\ttext"]
    rng = np.random.default_rng(7)
    for i in range(count):
        if speak:
            parts, j = [], 0
            while sum(map(len, parts)) < frames:
                parts.append(make_utterance(sentences[(i * 17 + j) % len(sentences)], (7, i, j))[0])
                j += 1
            audio = np.concatenate(parts)[:frames]
        else:
            t = np.arange(frames) / 16000
            audio = 0.05 * rng.standard_normal(frames) + 0.2 * np.sin(2 * np.pi * 220 * (i + 1) * t)
        sf.write(out / f"u{i:03d}.flac", audio.astype(np.float32), 16000)
        lines.append(f"u{i:03d}.flac\t{seconds}\t-\t-")
    (out / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "test.tsv"


def shape_mode(args: argparse.Namespace) -> None:
    """The X-Large-shaped timing (see the module docstring)."""
    shape = xlarge_shape(args.layers, args.hidden)
    n, layers = args.utterances, shape["num_hidden_layers"]
    k = max(1, min(args.reference_layers, layers))  # the reference's cost grows linearly with
    # the depth of the layer (its backward runs from the output down to it): the middle layer, or
    # the two ends, or evenly spread layers average it
    reference_layers = [layers // 2] if k == 1 else sorted(
        {round(i * (layers - 1) / (k - 1)) for i in range(k)})
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tsv = make_long_data(tmp / "data", n, args.seconds)
        model = make_model("xlarge", tmp / "model", shape)
        print(f"X-Large shape: {layers} layers x {shape['hidden_size']} wide, "
              f"{shape['intermediate_size']} FFN, {shape['num_attention_heads']} heads; {n} "
              f"utterances of {args.seconds:g} s, {args.steps} IG steps, device {args.device}",
              flush=True)
        ours = measure("speechfm", model, tsv, args.steps, n, args.threads, tmp, args.device)
        ref = measure("reference", model, tsv, args.steps, 1, args.threads, tmp, args.device,
                      reference_layers)
    audio_hours = n * args.seconds / 3600
    ours_per_hour = ours["seconds"] / audio_hours  # device-seconds per audio hour, all layers
    ref_per_hour = ref["seconds"] * layers / len(reference_layers) / (args.seconds / 3600)
    print(f"speechfm ({ours['target_batching']} backwards): {ours['seconds']:.1f} s for {n} utt "
          f"(all {layers} layers) = {ours_per_hour / 3600:.2f} device-hours per audio hour")
    print(f"reference (captum per layer and character): {ref['seconds']:.1f} s for 1 utt on "
          f"layers {[x + 1 for x in reference_layers]}, scaled to all layers: "
          f"{ref_per_hour / 3600:.2f} device-hours per audio hour")
    print(f"speed-up {ref_per_hour / ours_per_hour:.1f}x")
    scale = RECIPE_STEPS / args.steps  # both methods do the same work per step
    jobs, limit = layers, REFERENCE_JOB_SECONDS
    covered = jobs * limit / (ref_per_hour * scale)  # audio hours the reference's budget covers
    print(f"at the recipe's {RECIPE_STEPS} steps (times x{scale:g}): the reference's {jobs} jobs "
          f"of up to {limit / 3600:.0f} h ({jobs * limit / 3600:,.0f} device-hours at most) are, "
          f"at its measured rate, {covered:.2f} h of test audio; speechfm analyses that in "
          f"{covered * ours_per_hour * scale / 3600:.1f} device-hours")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--utterances", type=int, default=20)
    p.add_argument("--seconds", type=float, default=1.0, help="length of each utterance")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="torch threads of each measurement")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--reference-utterances", type=int, default=None,
                   help="run the (slow) reference on fewer utterances and scale its time linearly")
    p.add_argument("--shape", choices=("xlarge",), default=None,
                   help="time one random model of this shape (see the module docstring)")
    p.add_argument("--layers", type=int, default=48, help="--shape: transformer layers")
    p.add_argument("--hidden", type=int, default=1280, help="--shape: width")
    p.add_argument("--reference-layers", type=int, default=2,
                   help="--shape: layers the reference is timed on (scaled to all)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (--shape)")
    p.add_argument("--worker", choices=("speechfm", "reference"), help=argparse.SUPPRESS)
    p.add_argument("--only-layers", default="", help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if args.shape:
        return shape_mode(args)
    n, half = args.utterances, args.utterances // 2
    n_ref = args.reference_utterances or n
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tsv = make_data(tmp / "data", n, args.seconds)
        print(f"{n} utterances of {args.seconds} s, {args.steps} IG steps (gausslegendre), "
              f"{args.threads} torch thread(s)")
        for name in args.models:
            model = make_model(name, tmp / name)
            ours = {k: measure("speechfm", model, tsv, args.steps, k, args.threads, tmp)
                    for k in (half, n)}
            ref = {k: measure("reference", model, tsv, args.steps, k, args.threads, tmp)
                   for k in sorted({max(1, n_ref // 2), n_ref})}
            ref_wall = ref[n_ref]["seconds"] * n / n_ref
            ref_cpu = ref[n_ref]["cpu_seconds"] * n / n_ref
            scaled = "" if n_ref == n else f" (measured on {n_ref}, scaled to {n})"
            print(f"\n## {name} ({MODELS[name]['num_hidden_layers']} layers, "
                  f"{MODELS[name]['hidden_size']} wide)")
            print(f"CPU time, {n} utterances: speechfm {ours[n]['cpu_seconds']:.1f} s, reference "
                  f"{ref_cpu:.1f} s{scaled}; speed-up {ref_cpu / ours[n]['cpu_seconds']:.1f}x")
            print(f"wall time, {n} utterances: speechfm {ours[n]['seconds']:.1f} s, reference "
                  f"{ref_wall:.1f} s{scaled}; speed-up {ref_wall / ours[n]['seconds']:.1f}x")
            for label, runs in (("speechfm", ours), ("reference", ref)):
                lo, hi = min(runs), max(runs)
                print(f"memory {label}: peak RSS {runs[lo]['peak_rss_mb']:.0f} MB at {lo} utt, "
                      f"{runs[hi]['peak_rss_mb']:.0f} MB at {hi} utt "
                      f"(ratio {runs[hi]['peak_rss_mb'] / runs[lo]['peak_rss_mb']:.2f}); "
                      f"attributions kept {runs[lo]['kept_bytes'] / 1e6:.2f} MB -> "
                      f"{runs[hi]['kept_bytes'] / 1e6:.2f} MB")
            if n_ref == n:
                diff = max(abs(a - b) for a, b in zip(ours[n]["lur"], ref[n]["lur"]))
                print(f"LUR per layer: speechfm {[round(v, 1) for v in ours[n]['lur']]}, "
                      f"reference {[round(v, 1) for v in ref[n]['lur']]} (max diff {diff:.2f} pp)")


if __name__ == "__main__":
    main()
