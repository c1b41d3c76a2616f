"""Labeled tables: the one reader of (audio, transcript) pairs that every verb uses (`finetune`,
`evaluate`, `lm`, `lur`).

Accepted forms, the same everywhere:
- a TSV (or `.txt`) of `path<TAB>text` lines, with or without a header line;
- a TSV/CSV with a header that names a `path` and a `text` column (other columns are ignored, e.g.
  the demo's `path, seconds, voice, text`);
- a folder of audio files, each with its transcript in a `.txt` file beside it.
Relative paths are relative to the table's folder.
"""

from __future__ import annotations

import csv
from pathlib import Path

from speechfm.core.errors import SpeechfmError

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3")
SPLITS = ("train", "valid", "test")


def read_table(table: Path) -> list[tuple[Path, str]]:
    """(audio path, raw transcript) pairs of a table, with or without a header."""
    delimiter = "," if table.suffix.lower() == ".csv" else "\t"
    try:
        with table.open(encoding="utf-8", newline="") as f:
            rows = [row for row in csv.reader(f, delimiter=delimiter) if row]
    except (OSError, UnicodeDecodeError) as exc:
        raise SpeechfmError(f"cannot read labeled table: {exc}", path=table) from None
    except csv.Error as exc:
        raise SpeechfmError(f"not a {'CSV' if delimiter == ',' else 'TSV'} table: {exc}",
                            path=table) from None
    if not rows:
        raise SpeechfmError("the labeled table is empty", path=table)
    header = [cell.strip().lower() for cell in rows[0]]
    first = 1
    if "path" in header:
        if "text" not in header:
            raise SpeechfmError("the header names a 'path' column but no 'text' column",
                                path=table)
        path_col, text_col = header.index("path"), header.index("text")
    elif Path(rows[0][0]).suffix.lower() in AUDIO_SUFFIXES:  # no header: path<TAB>text
        path_col, text_col, first = 0, 1, 0
    else:
        raise SpeechfmError(f"the first line {rows[0][:3]} is neither a header naming 'path' and "
                            "'text' columns nor path<TAB>text with an audio file "
                            f"({', '.join(AUDIO_SUFFIXES)})", path=table)
    pairs = []
    for number, row in enumerate(rows[first:], start=first + 1):
        if len(row) <= max(path_col, text_col):
            raise SpeechfmError(f"line {number} has {len(row)} column(s), expected path and text",
                                path=table, hint="a labeled table is path<TAB>text, with or "
                                                 "without a header naming 'path' and 'text'")
        pairs.append(((table.parent / row[path_col]).resolve(), row[text_col]))
    return pairs


def read_folder(folder: Path) -> list[tuple[Path, str]]:
    """(audio, transcript) pairs of a folder of audio files with `.txt` transcripts beside them."""
    rows = []
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        txt = audio.with_suffix(".txt")
        if not txt.exists():
            raise SpeechfmError("audio file has no transcript beside it", path=audio,
                                hint=f"write its text to {txt.name}")
        rows.append((audio.resolve(), txt.read_text(encoding="utf-8")))
    if not rows:
        raise SpeechfmError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) with .txt transcripts",
                            path=folder)
    return rows


def read_labeled(source: Path) -> list[tuple[Path, str]]:
    """(audio path, raw transcript) pairs of one split: a table or a folder of audio + .txt."""
    if source.is_dir():
        return read_folder(source)
    if not source.exists():
        raise SpeechfmError("labeled data not found", path=source)
    return read_table(source)


def split_tables(labeled: Path) -> dict[str, Path]:
    """The split tables of a labeled folder laid out like the demo's (`train.tsv`, ...)."""
    if not labeled.is_dir():
        raise SpeechfmError("labeled folder not found", path=labeled)
    found = {p.stem: p for suffix in (".tsv", ".csv") for p in sorted(labeled.glob(f"*{suffix}"))}
    if "train" not in found:
        raise SpeechfmError("no train.tsv/train.csv in the labeled folder", path=labeled,
                            hint="or pass --train/--valid tables or audio folders")
    return found
