"""What the service's runtimes and timestamps give with a trained model: test CER/WER of torch
float32, torch int8, ONNX Runtime float32 and int8 (same greedy decoding, same exact batching),
ONNX logits against torch, and word/segment times against the demo archive's ground truth.

Usage: python benchmarks/serve_quality.py --model runs/finetune/model --demo data/demo
  [--files 8]. The model folder gets its ONNX graphs (`speechfm export --onnx`) in a temporary
copy when it has no current ones. Times: every demo broadcast file (up to `--files`) goes through
the service's own path (`speechfm_api.audio.split_speech`, the batcher's model, `speechfm_api.transcripts`); each
truth sentence is matched with the words whose middle lies inside it, and where the first (last)
word was recognised (at most a third of its letters wrong against the sentence's first (last)
word), its start (end) is compared with the sentence's start (end): a recognition error at a
sentence's edge is not a timing error. The truth's intervals are espeak-ng's output, leading and
trailing silence included. Segments are compared with the truth's speech blocks as in
tests/e2e/test_serve.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def scores(model, clips: list[np.ndarray], refs: list[str], batch: int = 8) -> dict[str, float]:
    from speechfm.core.scoring import error_rates

    hyps = []
    for i in range(0, len(clips), batch):
        hyps += [d.text for d in model.transcribe(clips[i:i + batch])]
    return {k: round(100 * v, 2) for k, v in error_rates(refs, hyps).items()}


def recognised(hyp: str, ref: str) -> bool:
    import jiwer

    return bool(ref) and jiwer.cer(ref, hyp) <= 1 / 3


def sentence_errors(model, demo: Path, files: int) -> dict[str, object]:
    """Start/end errors (s) of each truth sentence's words, and segment-vs-block checks."""
    from speechfm.core.constants import SAMPLE_RATE
    from speechfm.core.text import normalize
    from speechfm_api.audio import decode, split_speech
    from speechfm_api.transcripts import transcription

    starts, ends, segments_ok, segments, sentences = [], [], 0, 0, 0
    for ts in sorted((demo / "archive").rglob("*.ts"))[:files]:
        truth = json.loads(ts.with_name(ts.stem + ".truth.json").read_text())["intervals"]
        audio = decode(ts, 4000.0)
        spans = split_speech(audio)
        clips = [audio[round(s * SAMPLE_RATE): round(e * SAMPLE_RATE)] for s, e in spans]
        result = transcription(model, audio.size, spans, model.transcribe(clips) if clips else [])
        words = result.words()
        for iv in (iv for iv in truth if iv["kind"] == "speech"):
            sentences += 1
            ref = normalize(iv["text"]).split()
            inside = [w for w in words if iv["start"] <= (w["start"] + w["end"]) / 2 <= iv["end"]]
            if inside and recognised(inside[0]["word"], ref[0]):
                starts.append(inside[0]["start"] - iv["start"])
            if inside and recognised(inside[-1]["word"], ref[-1]):
                ends.append(inside[-1]["end"] - iv["end"])
        speech = [(iv["start"], iv["end"]) for iv in truth if iv["kind"] == "speech"]
        for seg in result.segments():
            segments += 1
            segments_ok += any(s - 0.3 <= seg.start and seg.end <= e + 0.3 for s, e in
                               _blocks(speech))
    a, b = np.abs(starts), np.abs(ends)
    return {"sentences": sentences, "starts_timed": len(starts), "ends_timed": len(ends),
            "start_error_s": {"median": round(float(np.median(a)), 3),
                              "p90": round(float(np.percentile(a, 90)), 3),
                              "within_0.3": round(float((a <= 0.3).mean()), 3),
                              "mean_signed": round(float(np.mean(starts)), 3)},
            "end_error_s": {"median": round(float(np.median(b)), 3),
                            "p90": round(float(np.percentile(b, 90)), 3),
                            "within_0.3": round(float((b <= 0.3).mean()), 3),
                            "mean_signed": round(float(np.mean(ends)), 3)},
            "segments_within_speech_blocks": f"{segments_ok}/{segments}"}


def _blocks(speech: list[tuple[float, float]], gap: float = 1.0) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted(speech):
        if out and s - out[-1][1] < gap:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="fine-tuned CTC folder")
    parser.add_argument("--demo", type=Path, required=True, help="`speechfm synth` output")
    parser.add_argument("--files", type=int, default=8, help="demo broadcast files timed")
    args = parser.parse_args()
    from speechfm.core.audio import read_clip
    from speechfm.core.labeled import read_labeled
    from speechfm.core.onnx import export_onnx, is_current
    from speechfm.core.text import Normalizer, TextConfig
    from speechfm_api.registry import LoadedModel
    from speechfm_api.settings import Settings

    with tempfile.TemporaryDirectory(prefix="serve-quality-") as tmp:
        folder = args.model
        if not is_current(folder):
            folder = Path(tmp) / "model"
            shutil.copytree(args.model, folder)
            export_onnx(folder)
        manifest = json.loads((folder / "onnx.json").read_text())
        table = read_labeled(args.demo / "labeled" / "test.tsv")
        normalizer = Normalizer(TextConfig())
        refs = [normalizer(text) for _, text in table]
        clips = [read_clip(path) for path, _ in table]
        out: dict[str, object] = {"test_utterances": len(clips),
                                  "export_max_abs_logit_diff": manifest["torch_max_abs_diff"]}
        models = {f"{runtime}-{dtype}": LoadedModel("m", folder, Settings(runtime=runtime,
                                                                          dtype=dtype))
                  for runtime, dtype in (("torch", "float32"), ("torch", "int8"),
                                         ("onnx", "float32"), ("onnx", "int8"))}
        diffs = [float(np.abs(a - b).max()) for a, b in zip(
            models["onnx-float32"].logits(clips[:16]), models["torch-float32"].logits(clips[:16]))]
        out["onnx_float32_max_abs_logit_diff_16_clips_batched"] = max(diffs)
        for name, model in models.items():
            out[name] = scores(model, clips, refs)
            print(name, out[name], flush=True)
        for name in ("torch-float32", "onnx-int8"):
            out[f"times_{name}"] = sentence_errors(models[name], args.demo, args.files)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
