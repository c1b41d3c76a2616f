"""Finnish transcript normalisation, vocabulary and labeled-data preparation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from speechfm.core.errors import SpeechfmError
from speechfm.core.labeled import read_labeled, split_tables
from speechfm.core.text import (
    Normalizer,
    TextConfig,
    make_processor,
    normalize,
    to_letters,
    write_vocab,
)
from speechfm.finetune import data
from tests.helpers import FINNISH_VOCAB


def test_normalisation_is_the_reference_one_and_reports_drops() -> None:
    norm = Normalizer()
    assert norm("Hyvää huomenta, Åke! Linja-auto lähti klo 7.") == "hyvää huomenta åke linja auto lähti klo"
    assert norm("Café «Öljy»  —  ÄÄNI?") == "cafe öljy ääni"
    report = norm.report()
    assert report["dropped"] == {",": 1, "!": 1, "7": 1, ".": 1, "«": 1, "»": 1, "?": 1}
    assert report["folded"] == {"é": 1}
    assert normalize("Numero 42", TextConfig(extra="0123456789")) == "numero 42"
    assert normalize("Café", TextConfig(fold_accents=False)) == "caf"
    assert to_letters("hei maailma") == "h e i | m a a i l m a |"


def test_vocabulary_matches_the_shared_model_fixture(tmp_path: Path) -> None:
    vocab = json.loads(write_vocab(tmp_path / "vocab.json").read_text())
    assert list(vocab) == FINNISH_VOCAB and vocab["<pad>"] == 0
    processor = make_processor(tmp_path / "vocab.json")
    ids = processor.tokenizer("hää ilta").input_ids
    assert processor.decode(ids, group_tokens=False) == "hää ilta"
    assert "<s>" not in processor.tokenizer.get_vocab()


def test_prepare_demo_splits_for_both_backends(small_demo: Path, tmp_path: Path) -> None:
    out = data.prepare(split_tables(small_demo / "labeled"), tmp_path / "data")
    for split in ("train", "valid", "test"):
        manifest = (out / f"{split}.tsv").read_text().splitlines()
        ltr = (out / f"{split}.ltr").read_text().splitlines()
        wrd = (out / f"{split}.wrd").read_text().splitlines()
        assert len(manifest) - 1 == len(ltr) == len(wrd) > 0
        root = Path(manifest[0])
        rel, frames = manifest[1].split("\t")
        assert sf.info(str(root / rel)).frames == int(frames)
        assert ltr[0] == to_letters(wrd[0]) and wrd[0] == normalize(wrd[0])
    symbols = [line.split()[0] for line in (out / "dict.ltr.txt").read_text().splitlines()]
    assert symbols[0] == "|" and set(symbols) == set(FINNISH_VOCAB[2:])
    report = json.loads((out / "text_report.json").read_text())
    assert report["utterances"] == {"train": 8, "valid": 4, "test": 4}
    assert report["dropped_total"] == sum(report["dropped"].values()) > 0  # punctuation
    utts = data.load_split(out, "valid")
    assert len(utts) == 4 and utts[0].path.exists()


def test_prepare_csv_and_audio_folders(small_demo: Path, tmp_path: Path) -> None:
    rows = read_labeled(small_demo / "labeled" / "train.tsv")
    folder = tmp_path / "folder"
    folder.mkdir()
    for i, (audio, text) in enumerate(rows[:3]):
        (folder / f"u{i}.flac").write_bytes(audio.read_bytes())
        (folder / f"u{i}.txt").write_text(text)
    table = tmp_path / "valid.csv"
    table.write_text("path,text\n" + "".join(f"{a},\"{t}\"\n" for a, t in rows[3:5]))
    out = data.prepare({"train": folder, "valid": table}, tmp_path / "data")
    assert len(data.load_split(out, "train")) == 3 and len(data.load_split(out, "valid")) == 2

    (folder / "u9.flac").write_bytes(rows[0][0].read_bytes())
    with pytest.raises(SpeechfmError, match="no transcript"):
        read_labeled(folder)
    bad = tmp_path / "bad.tsv"
    bad.write_text("file\ttranscript\nx.flac\thei\n")
    with pytest.raises(SpeechfmError, match="neither a header naming 'path' and 'text'"):
        read_labeled(bad)
    missing = tmp_path / "missing.tsv"
    missing.write_text("path\ttext\nnope.flac\thei\n")
    with pytest.raises(SpeechfmError, match="nope.flac"):
        data.prepare({"train": missing, "valid": missing}, tmp_path / "d2")
