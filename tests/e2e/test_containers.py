"""Apptainer definitions: parsed with spython (Apptainer itself is not installable here)."""

from __future__ import annotations

import shlex

import pytest
from spython.main.parse.parsers import SingularityParser

from tests.helpers import ROOT

IMAGES = {  # definition -> (extra torch index expected, entry point words, packages needed)
    "prepare.def": ("", ["speechfm", "prepare"], {"ffmpeg", "espeak-ng"}),
    "train-rocm.def": ("rocm", ["speechfm"], {"libsndfile1"}),
    "train-cuda.def": ("cu", ["speechfm"], {"libsndfile1"}),
    "serve.def": ("", ["speechfm", "serve"], {"ffmpeg"}),
}


def recipe(name: str):
    return SingularityParser(str(ROOT / "containers" / name)).recipe["spython-base"]


def test_every_definition_is_listed() -> None:
    assert {p.name for p in (ROOT / "containers").glob("*.def")} == set(IMAGES)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_definition(name: str) -> None:
    index, entry, packages = IMAGES[name]
    r = recipe(name)
    assert r.fromHeader == "debian:bookworm-slim"  # Python 3.11, as the project requires
    post = "\n".join(r.install)
    # installs the project the same way the workstation set-up does
    assert "bash scripts/setup.sh" in post
    copied = {line.split()[0] for line in r.files}
    for needed in ("pyproject.toml", "constraints.txt", "scripts", "src"):
        assert needed in copied
        assert (ROOT / needed).exists()
    system = post.split('SPEECHFM_SYSTEM_PACKAGES="', 1)[1].split('"', 1)[0].split()
    assert packages <= set(system)
    torch_index = post.split('SPEECHFM_TORCH_INDEX="', 1)[1].split('"', 1)[0]
    assert (index in torch_index) if index else torch_index == ""
    words = shlex.split(r.cmd)
    assert words[0] == "exec" and words[1 : 1 + len(entry)] == entry
    assert any("PATH=/opt/speechfm/.venv/bin" in e for e in r.environ)
    # the image checks itself with the install tests, knowing what setup.sh installed in it
    assert "tests" in copied
    assert any(f'SPEECHFM_TORCH_INDEX="{torch_index}"' in e for e in r.environ)
    assert any(f'SPEECHFM_SYSTEM_PACKAGES="{" ".join(system)}"' in e for e in r.environ)
    section = (ROOT / "containers" / name).read_text().split("%test", 1)[1].split("\n%", 1)[0]
    assert "pytest" in section and "tests/e2e/test_install.py" in section

