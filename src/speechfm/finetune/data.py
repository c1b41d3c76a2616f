"""Labeled data -> the inputs both fine-tuning backends read.

Accepted sources, per split: the demo's labeled TSV (columns path, seconds, voice, text), any
TSV/CSV with `path` and `text` columns (paths relative to the file), or a directory of audio files
each with a `.txt` transcript beside it. Written to one folder: fairseq's manifest
(`<split>.tsv`), letter targets (`<split>.ltr`), words (`<split>.wrd`), `dict.ltr.txt`, the
transformers `vocab.json`, and `text_report.json` (characters dropped by normalisation).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from speechfm.constants import SAMPLE_RATE
from speechfm.errors import SpeechfmError
from speechfm.text import Normalizer, TextConfig, to_letters, write_vocab

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg")
FAIRSEQ_DICT = "dict.ltr.txt"
VOCAB_JSON = "vocab.json"
REPORT_JSON = "text_report.json"


@dataclass(frozen=True)
class Utterance:
    path: Path
    text: str
    frames: int


def _rows_from_table(table: Path) -> list[tuple[Path, str]]:
    delimiter = "\t" if table.suffix.lower() in (".tsv", ".txt") else ","
    with table.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        missing = {"path", "text"} - set(reader.fieldnames or ())
        if missing:
            raise SpeechfmError(f"missing column(s) {sorted(missing)}", path=table,
                                hint="a labeled table needs a header with 'path' and 'text'")
        return [((table.parent / row["path"]).resolve(), row["text"] or "") for row in reader]


def _rows_from_folder(folder: Path) -> list[tuple[Path, str]]:
    rows = []
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        txt = audio.with_suffix(".txt")
        if not txt.exists():
            raise SpeechfmError("audio file has no transcript beside it", path=audio,
                                hint=f"write its text to {txt.name}")
        rows.append((audio.resolve(), txt.read_text(encoding="utf-8")))
    if not rows:
        raise SpeechfmError("no audio files (.flac/.wav/.ogg) with .txt transcripts", path=folder)
    return rows


def read_source(source: Path) -> list[tuple[Path, str]]:
    """(audio path, raw transcript) pairs of one split from a table or a folder of audio + .txt."""
    if source.is_dir():
        return _rows_from_folder(source)
    if not source.exists():
        raise SpeechfmError("labeled data not found", path=source)
    return _rows_from_table(source)


def split_sources(labeled: Path) -> dict[str, Path]:
    """The split tables of a labeled folder laid out like the demo's (`train.tsv`, ...)."""
    found = {p.stem: p for p in sorted(labeled.glob("*.tsv")) + sorted(labeled.glob("*.csv"))}
    if "train" not in found:
        raise SpeechfmError("no train.tsv/train.csv in the labeled folder", path=labeled,
                            hint="or pass --train/--valid/--test tables or audio folders")
    return found


def _frames(path: Path) -> int:
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise SpeechfmError(f"cannot read audio: {exc}", path=path) from exc
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
        raise SpeechfmError(f"audio is {info.samplerate} Hz with {info.channels} channel(s)",
                            path=path, hint=f"convert to {SAMPLE_RATE} Hz mono FLAC first")
    return int(info.frames)


def prepare(sources: dict[str, Path], out: Path, config: TextConfig | None = None) -> Path:
    """Normalise transcripts and write both backends' inputs for every split into `out`."""
    config = config or TextConfig()
    out.mkdir(parents=True, exist_ok=True)
    normalizer = Normalizer(config)
    splits: dict[str, list[Utterance]] = {}
    empty: dict[str, int] = {}
    for split, source in sources.items():
        utts = []
        for audio, raw in read_source(source):
            text = normalizer(raw)
            if not text:
                empty[split] = empty.get(split, 0) + 1
                log.warning("%s: transcript is empty after normalisation; skipped", audio)
                continue
            utts.append(Utterance(audio, text, _frames(audio)))
        if not utts:
            raise SpeechfmError(f"split '{split}' has no usable utterance", path=source)
        splits[split] = utts
    root = Path(os.path.commonpath([str(u.path.parent) for us in splits.values() for u in us]))
    if ":" in str(root):
        raise SpeechfmError("fairseq manifests cannot have ':' in their root folder", path=root)
    for split, utts in splits.items():
        _write_lines(out / f"{split}.tsv", [str(root)] + [
            f"{u.path.relative_to(root)}\t{u.frames}" for u in utts])
        _write_lines(out / f"{split}.ltr", [to_letters(u.text) for u in utts])
        _write_lines(out / f"{split}.wrd", [u.text for u in utts])
    counts = Counter(c for u in splits.get("train", []) for c in to_letters(u.text).split())
    # Every symbol of the vocabulary is listed (count 0 if unseen) so the output layer is fixed.
    symbols = ["|", *config.characters]
    _write_lines(out / FAIRSEQ_DICT, [f"{s} {counts.get(s, 0)}" for s in symbols])
    write_vocab(out / VOCAB_JSON, config)
    report = normalizer.report() | {
        "empty_after_normalisation": empty,
        "utterances": {s: len(u) for s, u in splits.items()},
        "hours": {s: round(sum(x.frames for x in u) / SAMPLE_RATE / 3600, 4)
                  for s, u in splits.items()},
    }
    (out / REPORT_JSON).write_text(json.dumps(report, ensure_ascii=False, indent=1),
                                   encoding="utf-8")
    if report["dropped_total"]:
        top = ", ".join(f"{c!r} x{n}" for c, n in list(report["dropped"].items())[:10])
        log.info("normalisation dropped %d characters (%s); see %s", report["dropped_total"],
                 top, out / REPORT_JSON)
    log.info("labeled data in %s: %s", out, report["utterances"])
    return out


def load_split(data: Path, split: str) -> list[Utterance]:
    """Utterances of a prepared split, read back from its manifest and `.wrd` file."""
    manifest, words = data / f"{split}.tsv", data / f"{split}.wrd"
    for path in (manifest, words):
        if not path.exists():
            raise SpeechfmError(f"prepared split '{split}' is missing", path=path)
    lines = manifest.read_text(encoding="utf-8").splitlines()
    texts = words.read_text(encoding="utf-8").splitlines()
    root, entries = Path(lines[0]), lines[1:]
    if len(entries) != len(texts):
        raise SpeechfmError(f"{len(entries)} manifest lines but {len(texts)} transcripts",
                            path=words)
    utts = []
    for entry, text in zip(entries, texts):
        rel, frames = entry.split("\t")
        utts.append(Utterance(root / rel, text, int(frames)))
    return utts


def _write_lines(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)
