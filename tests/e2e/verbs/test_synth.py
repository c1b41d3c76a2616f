"""`speechfm synth`'s generator end to end: the whole small demo synthesized again with the same
seed is the same files, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechfm.synth import synthesize
from tests.helpers import SMALL_DEMO
from tests.helpers.files import tree_digest


@pytest.mark.slow
def test_same_seed_gives_identical_files(small_demo: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synthesize(again, SMALL_DEMO, workers=1)
    assert tree_digest(again) == tree_digest(small_demo)
