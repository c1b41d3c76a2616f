"""One labeled-table reader (`speechfm.core.labeled`) for every verb, in every accepted form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechfm.core.errors import SpeechfmError
from speechfm.core.labeled import read_labeled, split_tables


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    for name in ("a/one.flac", "two.flac"):
        sf.write(tmp_path / name, 0.1 * rng.standard_normal(8000).astype(np.float32), 16000)
    return tmp_path


FORMS = {
    "headerless.tsv": "a/one.flac\tHei maailma\ntwo.flac\tToinen lause, \"lainaus\"\n",
    "header.tsv": "path\ttext\na/one.flac\tHei maailma\ntwo.flac\tToinen lause, \"lainaus\"\n",
    "demo.tsv": "path\tseconds\tvoice\ttext\na/one.flac\t0.5\tfi\tHei maailma\n"
                "two.flac\t0.5\tfi+f3\tToinen lause, \"lainaus\"\n",
    "columns.csv": "text,path\nHei maailma,a/one.flac\n\"Toinen lause, \"\"lainaus\"\"\",two.flac\n",
}


@pytest.mark.parametrize("name", sorted(FORMS))
def test_every_table_form_gives_the_same_pairs(clips: Path, name: str) -> None:
    table = clips / name
    table.write_text(FORMS[name], encoding="utf-8")
    assert read_labeled(table) == [((clips / "a/one.flac").resolve(), "Hei maailma"),
                                   ((clips / "two.flac").resolve(), 'Toinen lause, "lainaus"')]


def test_folder_of_audio_with_transcripts(clips: Path) -> None:
    (clips / "a/one.txt").write_text("Hei maailma")
    with pytest.raises(SpeechfmError, match="no transcript beside it"):
        read_labeled(clips)
    (clips / "two.txt").write_text("Toinen")
    assert [t for _, t in read_labeled(clips)] == ["Hei maailma", "Toinen"]


def test_bad_tables_name_the_file_and_line(clips: Path) -> None:
    bad = clips / "bad.tsv"
    bad.write_text("a/one.flac\tok\njust-a-path\n")
    with pytest.raises(SpeechfmError, match=r"bad.tsv: line 2 has 1 column"):
        read_labeled(bad)
    bad.write_text("path\tseconds\na.flac\t1\n")
    with pytest.raises(SpeechfmError, match="no 'text' column"):
        read_labeled(bad)
    with pytest.raises(SpeechfmError, match="no train.tsv"):
        split_tables(clips)


def test_verbs_read_a_headerless_table(clips: Path) -> None:
    """`lur` and `finetune`'s data step take the same headerless table the reader does."""
    from speechfm.finetune.data import load_split, prepare
    from speechfm.interpret.data import list_utterances

    table = clips / "train.tsv"
    table.write_text(FORMS["headerless.tsv"], encoding="utf-8")
    assert [u.path for u in list_utterances(table)] == [p for p, _ in read_labeled(table)]
    out = prepare({"train": table, "valid": table}, clips / "data")
    assert [u.text for u in load_split(out, "valid")] == ["hei maailma", "toinen lause lainaus"]
