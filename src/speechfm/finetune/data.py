"""Labeled data -> the inputs both fine-tuning backends read.

Accepted sources, per split: any form `speechfm.core.labeled` reads (a `path<TAB>text` table with
or without a header, a TSV/CSV with `path` and `text` columns, a folder of audio + `.txt`).
Written to one folder: fairseq's manifest
(`<split>.tsv`), letter targets (`<split>.ltr`), words (`<split>.wrd`), `dict.ltr.txt`, the
transformers `vocab.json`, and `text_report.json` (characters dropped by normalisation).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from speechfm.core.constants import SAMPLE_RATE
from speechfm.core.errors import SpeechfmError
from speechfm.core.labeled import read_labeled
from speechfm.core.manifest import write_manifest
from speechfm.core.text import Normalizer, TextConfig, to_letters, write_vocab

log = logging.getLogger(__name__)

FAIRSEQ_DICT = "dict.ltr.txt"
VOCAB_JSON = "vocab.json"
REPORT_JSON = "text_report.json"


@dataclass(frozen=True)
class Utterance:
    path: Path
    text: str
    frames: int


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
        for audio, raw in read_labeled(source):
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
        write_manifest(out / f"{split}.tsv", root,
                       [f"{u.path.relative_to(root)}\t{u.frames}" for u in utts])
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


def digest(data: Path) -> str:
    """sha256 over a prepared folder's tables (manifests, targets, dictionaries): whether the
    labeled data of a run changed since its checkpoints were made."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(p for p in data.iterdir()
                       if p.suffix in (".tsv", ".ltr", ".wrd", ".txt", ".json")
                       and p.name != REPORT_JSON):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
