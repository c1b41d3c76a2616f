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

from tqdm import tqdm

from speechfm.core.audio import read_clip
from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.ctc import BeamDecoder, load_ctc_model, transcribe
from speechfm.core.curves import write_summary
from speechfm.core.labeled import read_labeled
from speechfm.core.scoring import error_rates, utterance_errors
from speechfm.core.text import Normalizer, TextConfig

log = logging.getLogger(__name__)

def evaluate_set(model, processor, source: Path, normalizer: Normalizer,
                 hyp_file: Path, beam=None) -> dict[str, Any]:
    """Transcribe one test set, write per-utterance results to `hyp_file`, return its scores."""
    rows = read_labeled(source)
    refs, audio, paths = [], [], []
    for path, raw in tqdm(rows, desc=f"reading {source.name}", unit="utt", disable=None):
        refs.append(normalizer(raw))
        audio.append(read_clip(path))
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
    """Score every test set; writes `hyp_<set>.tsv` files, `metrics.json` and `summary.json`
    (WER and CER; per set when there are several) into `out`.
    With `lm` (an ARPA/KenLM file) decoding is beam search with that model, else greedy."""
    model, processor = load_ctc_model(model_dir)
    beam = None
    if lm is not None:
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
    headline = {name: {"wer": r["wer"], "cer": r["cer"]} for name, r in results.items()}
    write_summary(out, next(iter(headline.values())) if len(headline) == 1 else headline)
    return results
