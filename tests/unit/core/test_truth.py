"""Ground truth beside an archive's files (`speechfm.core.truth`): files of another schema or cut
short are skipped with a warning naming them, by every stage that scores against it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from speechfm.core.truth import read_all
from speechfm.dedup.truth import read_truth
from speechfm.prepare.vadeval import check_truth


def test_other_schemas_and_broken_files_are_skipped_naming_the_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = {"file": "ch/2021/01/31/a.ts", "duration": 3.0,
            "intervals": [{"start": 0.0, "end": 1.0, "kind": "speech"}],
            "repeats": [{"id": "ad1", "start": 1.0, "end": 2.0}], "near_misses": []}
    (tmp_path / "a.truth.json").write_text(json.dumps(good))
    (tmp_path / "b.truth.json").write_text('{"programme": "news"}')  # another schema
    (tmp_path / "c.truth.json").write_text('{"file": "x.ts", "dur')  # cut short
    (tmp_path / "d.truth.json").write_text(json.dumps({**good, "file": "d.ts", "duration": "1h"}))
    (tmp_path / "e.truth.json").write_text(json.dumps({**good, "file": "e.ts", "repeats": 3}))
    with caplog.at_level(logging.WARNING):
        vad, skipped = read_all(tmp_path, "VAD quality", check_truth)
    assert [t["file"] for t in vad] == [good["file"], "e.ts"] and skipped == 3
    for name, why in (("b", "no 'file'"), ("c", "not readable JSON"), ("d", "'duration'")):
        assert f"{tmp_path / name}.truth.json: skipped for VAD quality" in caplog.text
        assert why in caplog.text
    assert set(read_truth(tmp_path)) == {good["file"], "d.ts"}  # dedup reads other fields
    assert "e.truth.json: skipped for dedup quality" in caplog.text
    assert read_all(tmp_path / "empty", "VAD quality") == ([], 0)
