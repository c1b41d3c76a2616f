"""Word and character error rates (jiwer), shared by fine-tuning evaluation and `evaluate`."""

from __future__ import annotations

import jiwer


def error_rates(refs: list[str], hyps: list[str]) -> dict[str, float]:
    """Corpus WER and CER (errors over reference words/characters, as jiwer counts them)."""
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r.strip()]
    if not pairs:
        return {"wer": float("nan"), "cer": float("nan")}
    r, h = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"wer": float(jiwer.wer(r, h)), "cer": float(jiwer.cer(r, h))}


def utterance_errors(ref: str, hyp: str) -> dict[str, int]:
    """Edit counts of one utterance: word and character errors and reference lengths."""
    words = jiwer.process_words(ref, hyp)
    chars = jiwer.process_characters(ref, hyp)
    return {
        "word_errors": words.substitutions + words.deletions + words.insertions,
        "words": len(ref.split()),
        "char_errors": chars.substitutions + chars.deletions + chars.insertions,
        "chars": len(ref),
    }
