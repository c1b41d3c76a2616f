"""Shared fixtures: a small demo archive generated once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from speechfm.synth import SynthConfig, synthesize

SMALL_DEMO = SynthConfig(
    seed=3, channels=4, start="2021-01-31", days=2, hours_per_day=1, hour_seconds=25.0,
    labeled={"train": 8, "valid": 4, "test": 4},
)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-channel, 2-day demo (8 files of 25 s) and a 16-utterance labeled corpus."""
    out = tmp_path_factory.mktemp("demo")
    synthesize(out, SMALL_DEMO, jobs=2)
    return out


ROOT = Path(__file__).resolve().parents[1]


def run_speechfm(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI of this checkout (not whatever is installed) as a user would."""
    env = {**os.environ, **kwargs.pop("env", {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "speechfm", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, **kwargs)


def require(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed: run 'make setup'"
    return path
