"""The `speechfm` command: a verb per stage, --help everywhere, one-line errors."""

from __future__ import annotations

import pytest

from speechfm.cli import COMMANDS
from tests.helpers import run_speechfm as speechfm


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


def _options(verb: str) -> set[str]:
    """The option strings a verb's parser accepts (help-visible or not)."""
    from speechfm.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {s for action in sub.choices[verb]._actions for s in action.option_strings}


def test_one_spelling_per_idea_across_verbs() -> None:
    """Training verbs take --gpus and --set; every verb that records runs takes --tracking-uri."""
    for verb in ("pretrain", "finetune"):
        assert {"--gpus", "--set", "--tracking-uri", "--experiment"} <= _options(verb), verb
    for verb in ("evaluate", "lur", "register", "serve"):
        assert "--tracking-uri" in _options(verb), verb
    assert "--utterances" in _options("lur") and "--limit" not in _options("lur")
    for verb in ("synth", "prepare", "convert"):
        assert "--workers" in _options(verb) and "--jobs" not in _options(verb), verb


@pytest.mark.parametrize("argv", [
    ["pretrain", "--manifest", "m", "optimization.max_update=7"],  # positional overrides
    ["pretrain", "--manifest", "m", "--executor", "slurm"],  # the site decides
    ["prepare", "archive", "--out", "o", "--slurm"],  # the site decides
    ["finetune", "--out", "o", "--processes", "2"],  # --gpus
])
def test_dropped_spellings_are_rejected(argv: list[str], capsys) -> None:
    from speechfm.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert "unrecognized arguments" in capsys.readouterr().err


def test_pretrain_length_is_updates_as_in_finetune(tmp_path) -> None:
    """`--updates` (params.yaml `pretrain.updates`) is the pre-training length, as in finetune."""
    from speechfm.cli import build_parser
    from speechfm.pretrain.command import config_of

    args = build_parser().parse_args(["pretrain", "--manifest", str(tmp_path), "--updates", "7",
                                      "--set", "optimization.lr=[0.1]"])
    config = config_of(args)
    assert config.updates == 7 and config.overrides == ["optimization.lr=[0.1]"]
    assert "--updates" in _options("finetune") and "--simulate-gpus" in _options("pretrain")


@pytest.mark.slow  # a whole verb end to end (see `make test-fast`)
def test_tracking_uri_none_runs_a_verb_without_any_store(tiny_ctc_model_dir, small_demo,
                                                        tmp_path) -> None:
    """`--tracking-uri none` in a verb that records runs: it works and writes no mlflow.db."""
    res = speechfm("evaluate", "--model", tiny_ctc_model_dir, "--out", tmp_path / "eval",
                   "--test", small_demo / "labeled" / "test.tsv", "--tracking-uri", "none",
                   cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "eval" / "metrics.json").exists()
    assert not list(tmp_path.rglob("mlflow.db")) and not (tmp_path / "mlruns").exists()
    res = speechfm("register", tiny_ctc_model_dir, "--name", "x", "--tracking-uri", "none",
                   cwd=tmp_path)
    assert res.returncode == 2 and "needs an MLflow store" in res.stderr
