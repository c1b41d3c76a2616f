"""Site files are validated data: one schema (`speechfm.core.sites`), one loader, typos fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechfm.core.errors import SpeechfmError
from speechfm.core.sites import SITES_DIR, load_site
from tests.helpers import ROOT


@pytest.mark.parametrize("path", sorted((ROOT / SITES_DIR).glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_site_validates(path: Path) -> None:
    site = load_site(path.stem)
    assert site.name == path.stem
    assert site.executor in ("local", "slurm")


def test_lumi_site_is_typed() -> None:
    site = load_site("lumi")
    assert site.train.gpus_per_node == 8 and site.train.container is not None
    assert site.train.env["MIOPEN_FIND_MODE"] == "2"
    assert site.prepare.slurm.units_per_task == 1
    assert site.train.require_net_plugin is True  # no training over TCP sockets on LUMI
    assert site.train.container.env["LD_LIBRARY_PATH"].startswith("/opt/aws-ofi-rccl/lib:")
    assert load_site("local-slurm").train.require_net_plugin is False


@pytest.mark.parametrize("text, key", [
    ("executor: slurm\ntrain:\n  gpu_per_node: 8\n", "train.gpu_per_node"),
    ("prepare:\n  wokers: 2\n", "prepare.wokers"),
    ("trian:\n  gpus_per_node: 0\n", "trian"),
    ("train:\n  executor: slurm\n", "train.executor"),
    ("train:\n  container: {image: x.sif, bind: [/scratch]}\n", "train.container.bind"),
    ("train:\n  require_netplugin: true\n", "train.require_netplugin"),
])
def test_a_misspelt_key_is_an_error_naming_key_and_file(tmp_path: Path, text: str,
                                                        key: str) -> None:
    path = tmp_path / "mysite.yaml"
    path.write_text(text)
    with pytest.raises(SpeechfmError) as err:
        load_site(path)
    assert f"unknown key '{key}'" in str(err.value) and str(path) in str(err.value)


def test_wrong_types_and_values_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("executor: kubernetes\n")
    with pytest.raises(SpeechfmError, match="'executor'"):
        load_site(path)
    path.write_text("train:\n  gpus_per_node: many\n")
    with pytest.raises(SpeechfmError, match="train.gpus_per_node"):
        load_site(path)
    with pytest.raises(SpeechfmError, match="unknown site 'nowhere'"):
        load_site("nowhere")
    assert load_site(None).executor == "local"
