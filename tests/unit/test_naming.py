"""One name per knob: every `params.yaml` key of a stage reaches that stage's verb under its own
name, through a flag the verb's real parser has, with the library's default; a long option that
several verbs share means one thing (its help text is the same, or it comes from
`speechfm.core.cliargs`)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
import shlex
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT

PARAMS: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text())
STAGES: dict[str, Any] = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
REF = re.compile(r"\$\{([\w.]+)\}")

# params.yaml keys of a stage section that its verb deliberately does not get under their name.
PIPELINE_ONLY = {
    "evaluate.name": "the NAME of `evaluate --test NAME=PATH` (`evaluate.test` is its PATH); it "
                     "also names the stage's output reports/evaluate/hyp_NAME.tsv",
}

# Long options several verbs define with their own help, because the idea is the verb's own.
OWN_MEANING = {
    "--out": "what each verb writes; its help says what that is",
    "--preset": "each training verb's own preset family (presets/<size>.yaml for pretrain, "
                "finetune_<size>.yaml for finetune)",
    "--seed": "what each verb draws at random (synth: the demo's content, prepare: the "
              "validation split)",
    "--dtype": "the precision a verb runs the model in; each verb offers the ones it supports "
               "(lur: float32/float64 attributions, serve: inference precisions)",
}
PENDING: dict[str, str] = {}

# Where each verb's library defaults live: dataclasses / pydantic models (fields) and functions
# (keyword defaults), matched to the verb's options by destination name.
LIBRARY = {
    "synth": ["speechfm.synth:SynthConfig", "speechfm.synth:synthesize"],
    "prepare": ["speechfm.prepare.config:PrepareConfig", "speechfm.prepare.pipeline:prepare"],
    "convert": ["speechfm.prepare.convert:convert"],
    "dedup": ["speechfm.dedup.config:DedupConfig"],
    "evaluate": ["speechfm.core.ctc:BeamDecoder.__init__"],
    "lm": ["speechfm.evaluate.lm:write_lm"],
    "lur": ["speechfm.interpret.lur:LurRun"],
    "register": ["speechfm.register:register_model"],
}
STATED_DEFAULT = re.compile(r"\(default:? ([^()]*)\)")


def verb_parsers(record: bool = False) -> dict[str, argparse.ArgumentParser]:
    """The real `speechfm` parser's verbs; with `record`, every action remembers the module that
    added it (`_added_by`), to tell options from `core.cliargs` from a verb's own."""
    from speechfm.cli import build_parser

    if not record:
        parser = build_parser()
    else:
        original = argparse._ActionsContainer.add_argument

        def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
            action = original(self, *args, **kwargs)
            action._added_by = sys._getframe(1).f_globals["__name__"]
            return action

        argparse._ActionsContainer.add_argument = add_argument
        try:
            parser = build_parser()
        finally:
            argparse._ActionsContainer.add_argument = original
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def value_of(dotted: str) -> Any:
    node: Any = PARAMS
    for part in dotted.split("."):
        node = node[part]
    return node


def render(token: str) -> str:
    """A dvc.yaml token with its `${...}` filled in from params.yaml, as DVC renders them."""
    def one(match: re.Match) -> str:
        value = value_of(match.group(1))
        return str(value).lower() if isinstance(value, bool) else str(value)

    return REF.sub(one, token)


def commands(stage: str) -> list[list[str]]:
    """The stage's `speechfm VERB ...` commands, as tokens."""
    cmd = STAGES[stage]["cmd"]
    out = [shlex.split(line) for line in ([cmd] if isinstance(cmd, str) else cmd)]
    for tokens in out:
        assert tokens[0] == "speechfm", f"dvc.yaml stage {stage}: {tokens[:2]} is not a verb"
    return out


def stage_keys() -> list[str]:
    """`section.key` for every key of a params.yaml section named like a dvc.yaml stage."""
    return [f"{section}.{key}" for section, values in PARAMS.items()
            if section in STAGES and isinstance(values, dict) for key in values]


def passed_as(tokens: list[str], dotted: str) -> list[tuple[str, str, str]]:
    """How a command passes `${dotted}`: (flag, the flag's value token, the name it goes by)."""
    found = []
    for i, token in enumerate(tokens):
        if f"${{{dotted}}}" not in token:
            continue
        flag, _, value = token.partition("=") if token.startswith("--") else (tokens[i - 1], "",
                                                                               token)
        if flag == "--set":  # --set section.KEY=${stage.KEY}: the backend setting KEY
            name = value.partition("=")[0].rsplit(".", 1)[-1]
        else:
            name = flag.removeprefix("--").replace("-", "_")
        found.append((flag, value, name))
    return found


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


@pytest.mark.parametrize("dotted", stage_keys())
def test_a_stage_param_reaches_its_verb_under_its_name(dotted: str) -> None:
    section, key = dotted.split(".", 1)
    uses = [(tokens, use) for tokens in commands(section) for use in passed_as(tokens, dotted)]
    if dotted in PIPELINE_ONLY:
        assert all(name != key for _, (_, _, name) in uses), \
            f"{dotted} is passed as --{key}: drop it from PIPELINE_ONLY"
        return
    assert uses, f"dvc.yaml stage {section} does not pass params.yaml's {dotted}"
    parsers = verb_parsers()
    for tokens, (flag, value, name) in uses:
        verb = tokens[1]
        assert name == key, f"{dotted} reaches `speechfm {verb}` as {flag} {value} ({name})"
        action = option(parsers[verb], flag)
        assert action is not None, f"`speechfm {verb}` has no {flag} (dvc.yaml stage {section})"
        got = getattr(parsers[verb].parse_args([render(t) for t in tokens[2:]]), action.dest)
        # the value itself (typed by the parser), or the rendered token it is part of
        # (--set section.KEY=VALUE, evaluate --test NAME=PATH)
        want = value_of(dotted) if value == f"${{{dotted}}}" else render(value)
        if isinstance(got, list):  # repeatable options
            assert want in got, f"{dotted}: {want!r} not in {verb} {flag} {got}"
        else:
            assert got == (Path(want) if isinstance(got, Path) else want), (dotted, got, want)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_dvc_command_parses_with_the_real_parser(stage: str) -> None:
    """Every flag dvc.yaml gives a verb exists and takes params.yaml's value (type, choices)."""
    parsers = verb_parsers()
    for tokens in commands(stage):
        assert tokens[1] in parsers, f"dvc.yaml stage {stage}: no verb {tokens[1]}"
        for token in tokens:
            for ref in REF.findall(token):
                value_of(ref)  # a KeyError names a ${...} that params.yaml lacks
        try:
            parsers[tokens[1]].parse_args([render(t) for t in tokens[2:]])
        except SystemExit:
            pytest.fail(f"dvc.yaml stage {stage}: `{shlex.join(tokens)}` does not parse")


def test_site_is_passed_as_site() -> None:
    """The top-level `site` knob reaches every verb that takes it as --site."""
    for stage in STAGES:
        for tokens in commands(stage):
            for flag, _, name in passed_as(tokens, "site"):
                assert flag == "--site", f"stage {stage} passes ${{site}} as {flag}"


def library_defaults(target: str) -> dict[str, Any]:
    """Field or keyword defaults of `module:Name` (a dataclass, a pydantic model, a function)."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out
    if hasattr(obj, "model_fields"):
        return {name: f.get_default(call_default_factory=True)
                for name, f in obj.model_fields.items() if not f.is_required()}
    return {name: p.default for name, p in inspect.signature(obj).parameters.items()
            if p.default is not inspect.Parameter.empty}


def stated(action: argparse.Action) -> Any:
    """The default an option's help states, as the option would parse it; None if none."""
    match = STATED_DEFAULT.search(action.help or "")
    if not match:
        return None
    try:
        return (action.type or str)(match.group(1).strip())
    except (ValueError, argparse.ArgumentTypeError):
        return None  # a default that is not a value, e.g. "the site's prepare.workers"


@pytest.mark.parametrize("verb", sorted(LIBRARY))
def test_cli_defaults_are_the_library_defaults(verb: str) -> None:
    """A verb's option and the library setting of the same name default alike, whether the
    parser holds the default or only its help states it (prepare: the site file decides)."""
    library: dict[str, Any] = {}
    for target in LIBRARY[verb]:
        library |= library_defaults(target)
    compared = []
    for action in verb_parsers()[verb]._actions:
        if action.dest not in library or library[action.dest] is None:
            continue
        cli = action.default if action.default is not None else stated(action)
        if cli is None:
            continue
        compared.append(action.dest)
        assert cli == library[action.dest], \
            f"speechfm {verb} {action.option_strings}: default {cli!r}, library " \
            f"{library[action.dest]!r}"
    assert compared, f"no option of `speechfm {verb}` matched a library setting"


def test_a_shared_long_option_means_one_thing() -> None:
    """Verbs that share a long option share its help text, or take it from core.cliargs."""
    defined: dict[str, list[tuple[str, str | None, str]]] = defaultdict(list)
    for verb, parser in verb_parsers(record=True).items():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help" and action.help != argparse.SUPPRESS:
                    defined[flag].append((verb, action.help, action._added_by))
    clashes = {}
    for flag, uses in defined.items():
        by_hand = [(verb, text) for verb, text, module in uses
                   if module != "speechfm.core.cliargs"]
        if len({text for _, text, _ in uses}) > 1 and by_hand:
            clashes[flag] = by_hand
    for flag in (*OWN_MEANING, *PENDING):
        assert flag in clashes, f"{flag} is no longer defined differently by hand: drop its entry"
    unexplained = {flag: uses for flag, uses in clashes.items()
                   if flag not in OWN_MEANING and flag not in PENDING}
    assert not unexplained, ("one option, several meanings (take it from core.cliargs, or "
                             f"give each idea its own name): {unexplained}")


def test_the_core_module_map_lists_every_core_module() -> None:
    """`speechfm.core`'s docstring names each of its modules (the map a newcomer reads)."""
    from speechfm import core

    listed = {name for line in core.__doc__.splitlines()[2:]
              for name in re.split(r",\s*", line[:20].strip()) if name}
    modules = {p.stem for p in Path(core.__file__).parent.glob("*.py") if p.stem != "__init__"}
    assert modules == listed
