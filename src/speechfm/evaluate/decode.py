"""CTC transcription of test sets with a transformers CTC model folder (greedy, or beam search
with an n-gram language model), and scoring."""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from speechfm.constants import SAMPLE_RATE
from speechfm.errors import SpeechfmError
from speechfm.evaluate.scoring import error_rates, utterance_errors
from speechfm.finetune.data import read_source
from speechfm.inference import ctc_logits
from speechfm.text import Normalizer, TextConfig

log = logging.getLogger(__name__)

BATCH_SECONDS = 120.0
"""Audio per inference batch (utterances sorted by length, so padding stays small)."""


def load_model(model_dir: Path):
    """(model in eval mode, processor) from a folder written by `finetune` or `export`."""
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    if not (model_dir / "config.json").exists():
        raise SpeechfmError("not a model folder (no config.json)", path=model_dir,
                            hint="pass the model/ folder written by 'speechfm finetune'")
    try:
        processor = Wav2Vec2Processor.from_pretrained(str(model_dir))
    except (OSError, ValueError) as exc:
        raise SpeechfmError(f"no CTC processor in the model folder: {exc}", path=model_dir) from exc
    return Wav2Vec2ForCTC.from_pretrained(str(model_dir)).eval(), processor


def transcribe(model, processor, audio: list[np.ndarray], beam=None) -> list[str]:
    """CTC transcripts of a list of 16 kHz waveforms, batched by length (each exactly as if alone,
    `speechfm.inference`): greedy, or with `beam` (a `speechfm.evaluate.lm.BeamDecoder`) over each
    utterance's log-probabilities."""
    order = sorted(range(len(audio)), key=lambda i: len(audio[i]))
    out: list[str] = [""] * len(audio)
    batch: list[int] = []

    def flush() -> None:
        logits = ctc_logits(model, processor.feature_extractor, [audio[i] for i in batch])
        if beam is None:
            texts = [processor.decode(lg.argmax(-1)) for lg in logits]
        else:
            texts = [beam(torch.log_softmax(lg.float(), dim=-1).numpy()) for lg in logits]
        for i, text in zip(batch, texts):
            out[i] = text
        batch.clear()

    for i in order:
        if batch and (len(batch) + 1) * len(audio[i]) > BATCH_SECONDS * SAMPLE_RATE:
            flush()
        batch.append(i)
    if batch:
        flush()
    return out


def evaluate_set(model, processor, source: Path, normalizer: Normalizer,
                 hyp_file: Path, beam=None) -> dict[str, Any]:
    """Transcribe one test set, write per-utterance results to `hyp_file`, return its scores."""
    rows = read_source(source)
    refs, audio, paths = [], [], []
    for path, raw in tqdm(rows, desc=f"reading {source.name}", unit="utt", disable=None):
        try:
            wav, rate = sf.read(str(path), dtype="float32")
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise SpeechfmError(f"cannot read audio: {exc}", path=path) from exc
        if rate != SAMPLE_RATE or wav.ndim != 1:
            raise SpeechfmError(f"audio is {rate} Hz, {wav.ndim}-D", path=path,
                                hint=f"convert to {SAMPLE_RATE} Hz mono first")
        refs.append(normalizer(raw))
        audio.append(wav)
        paths.append(path)
    start, cpu = time.perf_counter(), time.process_time()
    hyps = transcribe(model, processor, audio, beam)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    seconds = sum(len(a) for a in audio) / SAMPLE_RATE
    tmp = hyp_file.with_name(hyp_file.name + ".part")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["path", "reference", "hypothesis", "word_errors", "words", "char_errors",
                         "chars"])
        for path, ref, hyp in zip(paths, refs, hyps):
            e = utterance_errors(ref, hyp)
            writer.writerow([path, ref, hyp, e["word_errors"], e["words"], e["char_errors"],
                             e["chars"]])
    os.replace(tmp, hyp_file)
    scores = error_rates(refs, hyps)
    return scores | {"utterances": len(rows), "audio_seconds": round(seconds, 2),
                     "real_time_factor": round(wall / max(seconds, 1e-9), 5),
                     "decode_cpu_seconds": round(cpu, 2)}


def evaluate(model_dir: Path, sets: dict[str, Path], out: Path,
             config: TextConfig | None = None, lm: Path | None = None,
             lm_settings: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Score every test set; writes `hyp_<set>.tsv` files and `metrics.json` into `out`.
    With `lm` (an ARPA/KenLM file) decoding is beam search with that model, else greedy."""
    model, processor = load_model(model_dir)
    beam = None
    if lm is not None:
        from speechfm.evaluate.lm import BeamDecoder

        beam = BeamDecoder(processor, lm, **(lm_settings or {}))
    out.mkdir(parents=True, exist_ok=True)
    normalizer = Normalizer(config or TextConfig())
    results = {}
    for name, source in sets.items():
        results[name] = evaluate_set(model, processor, source, normalizer,
                                     out / f"hyp_{name}.tsv", beam)
        log.info("%s: WER %.2f%% CER %.2f%% (%d utterances)", name,
                 100 * results[name]["wer"], 100 * results[name]["cer"],
                 results[name]["utterances"])
    metrics = out / "metrics.json"
    metrics.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results
