"""Backend-neutral fine-tuning knobs (`speechfm.finetune.knobs`): one spelling in params.yaml,
dvc.yaml and the CLI, mapped to each backend's settings, errors naming the knob."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from speechfm.core.cliargs import parse_bool
from speechfm.core.errors import SpeechfmError
from speechfm.core.presets import load_finetune
from speechfm.finetune.knobs import Knobs
from tests.helpers import ROOT

KNOBS = ("epochs", "updates", "learning_rate", "freeze_feature_encoder", "gpus")


def test_each_backend_gets_its_own_settings() -> None:
    knobs = Knobs(updates=500, learning_rate=1e-4, freeze_feature_encoder=True, gpus=8)
    assert knobs.transformers({"warmup_steps": 0.2}) == {
        "warmup_steps": 0.2, "max_steps": 500, "learning_rate": 1e-4,
        "freeze_feature_encoder": True}
    tiny = load_finetune("tiny")
    assert knobs.fairseq({"model.mask_prob": 0.3}, tiny) == {
        "model.mask_prob": 0.3, "optimization.max_update": 500, "optimization.lr": [1e-4],
        "model.feature_grad_mult": 0.0}
    assert Knobs(freeze_feature_encoder=False).fairseq({}, tiny) == {
        "model.feature_grad_mult": 1.0}
    assert Knobs(epochs=2.5).transformers({}) == {"num_train_epochs": 2.5}
    assert Knobs().transformers({}) == {} and Knobs().fairseq({}, tiny) == {}  # all presets'


def test_values_a_backend_cannot_honour_are_errors_naming_the_knob() -> None:
    tiny = load_finetune("tiny")  # fairseq: tri-stage schedule over updates
    with pytest.raises(SpeechfmError, match=r"'epochs' \(--epochs, finetune.epochs in "
                                            r"params.yaml\) = 10 cannot be honoured by the "
                                            "fairseq backend"):
        Knobs(epochs=10).fairseq({}, tiny)
    fixed = Knobs(epochs=3).fairseq({"lr_scheduler._name": "fixed"}, tiny)
    assert fixed["optimization.max_epoch"] == 3 and fixed["optimization.max_update"] == 0
    with pytest.raises(SpeechfmError, match="counts whole epochs"):
        Knobs(epochs=2.5).fairseq({"lr_scheduler._name": "fixed"}, tiny)
    with pytest.raises(SpeechfmError, match="both 'epochs'.* and 'updates'"):
        Knobs(epochs=1, updates=10)
    with pytest.raises(SpeechfmError, match="'gpus'"):
        Knobs(gpus=0)
    with pytest.raises(SpeechfmError, match=r"'learning_rate'.*and --set learning_rate=0.1"):
        Knobs(learning_rate=0.2).transformers({"learning_rate": 0.1})
    with pytest.raises(SpeechfmError, match=r"--set optimization.max_update=9 both set it"):
        Knobs(updates=5).fairseq({"optimization.max_update": 9}, tiny)
    assert parse_bool("False") is False and parse_bool("yes") is True
    with pytest.raises(argparse.ArgumentTypeError):
        parse_bool("maybe")


def test_one_spelling_in_params_dvc_yaml_and_the_cli() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["finetune"]
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["finetune"]["cmd"]
    for knob in KNOBS:
        assert knob in params, knob
        assert f"--{knob.replace('_', '-')} ${{finetune.{knob}}}" in stage, knob
    help_text = _verb_parser("finetune").format_help()
    for knob in KNOBS:
        assert f"--{knob.replace('_', '-')}" in help_text, knob


def test_the_cli_refuses_what_the_backend_cannot_do_before_anything_runs(tmp_path: Path,
                                                                         capsys) -> None:
    """In-process: the CLI parses, the recipe refuses, nothing is written."""
    from speechfm.cli import main

    out = tmp_path / "ft"
    status = main(["finetune", "--backend", "fairseq", "--labeled", str(tmp_path), "--out",
                   str(out), "--epochs", "10"])
    assert status == 2
    assert "'epochs' (--epochs, finetune.epochs in params.yaml) = 10.0 cannot be honoured" in \
        capsys.readouterr().err
    assert not out.exists()


def _verb_parser(verb: str):
    from speechfm.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[verb]
