"""The `speechfm` command: a verb per stage, --help everywhere, one-line errors."""

from __future__ import annotations

import pytest

from speechfm.cli import COMMANDS
from tests.conftest import run_speechfm as speechfm


def test_top_level_help_lists_every_verb() -> None:
    res = speechfm("--help")
    assert res.returncode == 0
    for verb in COMMANDS:
        assert verb in res.stdout


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_each_verb_has_help(verb: str) -> None:
    res = speechfm(verb, "--help")
    assert res.returncode == 0, res.stderr
    assert "usage: speechfm " + verb in res.stdout


def test_error_is_one_line_without_traceback(tmp_path) -> None:
    bad = tmp_path / "demo"
    bad.mkdir()
    (bad / "synth.json").write_text('{"seed": 99}')
    res = speechfm("synth", "--out", str(bad), "--days", "1", "--hour-seconds", "5")
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, res.stderr
    assert str(bad / "synth.json") in lines[0] and "other settings" in lines[0]
    assert "Traceback" not in res.stderr


def test_debug_shows_traceback(tmp_path) -> None:
    bad = tmp_path / "demo"
    bad.mkdir()
    (bad / "synth.json").write_text('{"seed": 99}')
    res = speechfm("--debug", "synth", "--out", str(bad), "--days", "1")
    assert res.returncode != 0
    assert "Traceback" in res.stderr
